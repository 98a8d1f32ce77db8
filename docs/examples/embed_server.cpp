// An application's own HTTP server (Boost.Beast) that embeds a drover::supervisor in its
// io_context and serves drover's API, metrics, probes and dashboard under its own /drover/
// routes, beside its own /hello. Built and run by the test suite (test/http/test_embed.py).
//
//   embed_server PORT PROGRAM [ARGS...]     supervises PROGRAM as the service "worker"
//   curl http://127.0.0.1:PORT/hello        the application's own route
//   open http://127.0.0.1:PORT/drover/      drover's dashboard; /drover/api/v1/services, ...
#include <cstdlib>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <drover/http_api.hpp> // the one include drover's part needs (and drover/supervisor.hpp)

namespace asio = boost::asio;
namespace http = boost::beast::http;
using asio::ip::tcp;

// One connection: answers the application's routes itself, hands /drover/... to drover.
asio::awaitable<void> session(tcp::socket sock, drover::http_api& api) {
    boost::beast::flat_buffer buf;
    for (;;) {
        http::request<http::string_body> req;
        auto [ec, n] = co_await http::async_read(sock, buf, req, asio::as_tuple(asio::use_awaitable));
        if (ec) co_return;
        const std::string_view target = req.target();
        if (target == "/drover" || target.starts_with("/drover/") || target.starts_with("/drover?")) {
            std::string rest(static_cast<const char*>(buf.data().data()), buf.size());
            api.serve(std::move(sock), drover::http_request::from(req), std::move(rest));
            co_return; // drover serves this connection from now on
        }
        http::response<http::string_body> res{http::status::not_found, req.version()};
        if (req.target() == "/hello") {
            res.result(http::status::ok);
            res.body() = "hello from the application\n";
        }
        res.set(http::field::content_type, "text/plain");
        res.keep_alive(req.keep_alive());
        res.prepare_payload();
        co_await http::async_write(sock, res, asio::as_tuple(asio::use_awaitable));
        if (!req.keep_alive()) co_return;
    }
}

asio::awaitable<void> listener(tcp::acceptor& acceptor, drover::http_api& api) {
    for (;;) {
        auto [ec, sock] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
        if (ec) co_return;
        asio::co_spawn(acceptor.get_executor(), session(std::move(sock), api), asio::detached);
    }
}

int main(int argc, char** argv) {
    if (argc < 3) {
        std::cerr << "usage: embed_server PORT PROGRAM [ARGS...]\n";
        return 2;
    }
    asio::io_context io;

    // The supervisor, in the application's io_context.
    drover::supervisor sup(io.get_executor());
    std::vector<std::string> args(argv + 3, argv + argc);
    drover::service worker("worker", drover::command(argv[2], args));
    worker.restart = drover::restart_policy::always;
    sup.add(std::move(worker));
    sup.async_run([](drover::error_code) {});

    // drover's routes, under /drover (loopback only: no token needed).
    drover::http_api_options options;
    options.prefix = "/drover";
    drover::http_api api(io.get_executor(), sup, options);

    tcp::acceptor acceptor(
        io, {asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(std::atoi(argv[1]))});
    asio::co_spawn(io, listener(acceptor, api), asio::detached);

    asio::signal_set stop(io, SIGINT, SIGTERM);
    stop.async_wait([&](auto, int) {
        acceptor.close();
        api.close();
        sup.async_shutdown(std::chrono::seconds(10), [&](drover::error_code) { io.stop(); });
    });
    std::cout << "listening on 127.0.0.1:" << acceptor.local_endpoint().port() << std::endl;
    io.run();
}
