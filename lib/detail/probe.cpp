// drover (private): one attempt of a readiness or health probe. TCP and HTTP run on one Asio
// socket bounded by one steady_timer; exec spawns the command and waits with async_wait_for.
// Beast is used here and nowhere else, so no public header (and no other translation unit)
// pays for its templates.
#include "detail/probe.hpp"

#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <optional>
#include <system_error>
#include <utility>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <fmt/core.h>

#include "drover/child.hpp"

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

namespace drover::detail {

namespace {

using clk = std::chrono::steady_clock;

// A probe only needs the status line; the limits keep a misbehaving endpoint from making the
// supervisor buffer much. The body is still read (up to its limit, then dropped) so that the
// server sees an orderly close rather than a reset while it writes.
constexpr std::uint32_t http_header_limit = 16 * 1024;
constexpr std::uint64_t http_body_limit = 64 * 1024;
constexpr std::size_t http_scratch = 8 * 1024;

/// "1s", "250ms", "1.5s", "20us": the short form used in probe details.
std::string short_duration(clk::duration d) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
    constexpr long long ms = 1'000'000, s = 1'000'000'000;
    if (ns % s == 0) return fmt::format("{}s", ns / s);
    if (ns >= s && ns % ms == 0) {
        // Seconds with up to three decimals, trailing zeros dropped: 1500ms reads "1.5s".
        std::string frac = fmt::format("{:03}", (ns % s) / ms);
        while (frac.back() == '0') frac.pop_back();
        return fmt::format("{}.{}s", ns / s, frac);
    }
    if (ns % ms == 0) return fmt::format("{}ms", ns / ms);
    if (ns % 1000 == 0) return fmt::format("{}us", ns / 1000);
    return fmt::format("{}ns", ns);
}

/// An error's message as it reads inside a sentence: "Connection refused" becomes
/// "connection refused" (an acronym such as "EOF" keeps its case).
std::string describe(const error_code& ec) {
    std::string m = ec.message();
    if (m.size() >= 2 && std::isupper(static_cast<unsigned char>(m[0])) &&
        std::islower(static_cast<unsigned char>(m[1])))
        m[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(m[0])));
    return m;
}

// ---- attempts ----------------------------------------------------------------------------------
// Every attempt is a state object shared (shared_ptr) by the handle and the handlers it has
// outstanding. `over_` is set once: when the result is reported, or when the handle goes.
// After that, a late handler (an aborted operation, the timer racing the connect) only
// returns. Everything runs on the probe's executor, so a plain flag suffices.

using done_fn = std::function<void(bool ok, std::string detail)>;

class attempt : public std::enable_shared_from_this<attempt> {
public:
    explicit attempt(done_fn done) : done_(std::move(done)) {}
    attempt(const attempt&) = delete;
    attempt& operator=(const attempt&) = delete;
    virtual ~attempt() = default;

    /// The handle went: no report; what the attempt owns is released now, not when the last
    /// aborted handler has run.
    void cancel() {
        if (over_) return;
        over_ = true;
        done_ = nullptr;
        release();
    }

    /// Reports `ok`/`detail` through the executor (never inline in start_probe).
    void report_later(asio::any_io_executor ex, bool ok, std::string detail) {
        asio::post(ex, [self = shared_from_this(), ok, d = std::move(detail)]() mutable {
            self->report(ok, std::move(d));
        });
    }

protected:
    bool over() const noexcept { return over_; }

    /// The one report. Releases first: `done` may start the next attempt at once.
    void report(bool ok, std::string detail) {
        if (over_) return;
        over_ = true;
        release();
        auto done = std::move(done_);
        done_ = nullptr;
        if (done) done(ok, std::move(detail));
    }

    /// Stops what is outstanding (timers, sockets, the child).
    virtual void release() {}

private:
    done_fn done_;
    bool over_ = false;
};

/// A TCP connect, and for http the request and its response, on one socket.
class net_attempt final : public attempt {
public:
    net_attempt(asio::any_io_executor ex, done_fn done, std::string host, std::string port,
                clk::duration timeout, std::optional<std::string> http_target)
        : attempt(std::move(done)), ex_(std::move(ex)), timer_(ex_), socket_(ex_), host_(std::move(host)),
          port_(std::move(port)), timeout_(timeout), target_(std::move(http_target)) {}

    void start() {
        timer_.expires_after(timeout_);
        timer_.async_wait([self = shared()](error_code ec) {
            if (ec || self->over()) return;
            self->on_timeout();
        });
        // A numeric host needs no resolver (and so none of the thread Asio's resolver starts).
        boost::system::error_code ec;
        const auto address = asio::ip::make_address(host_, ec);
        if (!ec) {
            endpoints_.emplace_back(address, static_cast<unsigned short>(std::stoul(port_)));
            connect();
            return;
        }
        resolver_.emplace(ex_);
        resolver_->async_resolve(host_, port_, tcp::resolver::numeric_service,
                                 [self = shared()](error_code ec, tcp::resolver::results_type results) {
                                     if (self->over()) return;
                                     if (ec)
                                         return self->report(false, fmt::format("cannot resolve {}: {}",
                                                                                self->host_, describe(ec)));
                                     for (const auto& entry : results)
                                         self->endpoints_.push_back(entry.endpoint());
                                     self->connect();
                                 });
    }

private:
    std::shared_ptr<net_attempt> shared() {
        return std::static_pointer_cast<net_attempt>(shared_from_this());
    }

    void connect() {
        asio::async_connect(socket_, endpoints_, [self = shared()](error_code ec, const tcp::endpoint&) {
            if (self->over()) return;
            if (ec) return self->report(false, describe(ec));
            if (!self->target_)
                return self->report(true, "connected to " + join_host_port(self->host_, self->port_));
            self->send_request();
        });
    }

    void send_request() {
        request_.method(http::verb::get);
        request_.target(*target_);
        request_.version(11);
        // The port is part of the Host header unless it is the scheme's default.
        std::string host = join_host_port(host_, port_);
        if (port_ == "80") host.resize(host.size() - 3);
        request_.set(http::field::host, host);
        request_.set(http::field::user_agent, "drover");
        request_.set(http::field::connection, "close");
        http::async_write(socket_, request_, [self = shared()](error_code ec, std::size_t) {
            if (self->over()) return;
            if (ec) return self->report(false, "sending the request: " + describe(ec));
            self->read_header();
        });
    }

    void read_header() {
        parser_.emplace();
        parser_->header_limit(http_header_limit);
        // The body's size is bounded below as it is drained; a Content-Length over the bound
        // must not fail the header, which is all the result depends on.
        parser_->body_limit(boost::none);
        http::async_read_header(socket_, buffer_, *parser_, [self = shared()](error_code ec, std::size_t) {
            if (self->over()) return;
            if (ec) return self->report(false, "reading the response: " + describe(ec));
            self->status_ = self->parser_->get().result_int();
            if (self->parser_->is_done()) return self->report_status();
            self->scratch_.resize(http_scratch);
            self->read_body();
        });
    }

    void read_body() {
        // The status decides; the body is read (into one scratch buffer, at most
        // http_body_limit bytes) only so the server can finish writing it. A body that is
        // longer, cut short or late still leaves the status as the result.
        auto& body = parser_->get().body();
        body.data = scratch_.data();
        body.size = scratch_.size();
        http::async_read(socket_, buffer_, *parser_, [self = shared()](error_code ec, std::size_t) {
            if (self->over()) return;
            self->drained_ += self->scratch_.size() - self->parser_->get().body().size;
            if (ec == http::error::need_buffer) ec = {}; // the scratch buffer is full: go on
            if (ec || self->parser_->is_done() || self->drained_ >= http_body_limit)
                return self->report_status();
            self->read_body();
        });
    }

    void report_status() { report(status_ >= 200 && status_ < 300, fmt::format("HTTP {}", status_)); }

    void on_timeout() {
        if (status_ != 0) return report_status(); // only the body was late
        report(false, "timed out after " + short_duration(timeout_));
    }

    void release() override {
        timer_.cancel();
        if (resolver_) resolver_->cancel();
        boost::system::error_code ignored;
        socket_.close(ignored);
        // The parser, buffers and request stay: an aborted Beast operation still refers to
        // them until its handler has run, and they go with the state after that.
    }

    asio::any_io_executor ex_;
    asio::steady_timer timer_;
    std::optional<tcp::resolver> resolver_; // only for a name
    tcp::socket socket_;
    std::vector<tcp::endpoint> endpoints_;
    std::string host_;
    std::string port_;
    clk::duration timeout_;
    std::optional<std::string> target_; // set for http
    http::request<http::empty_body> request_;
    boost::beast::flat_buffer buffer_;
    std::optional<http::response_parser<http::buffer_body>> parser_;
    std::vector<char> scratch_; // where the body goes, to be dropped
    std::uint64_t drained_ = 0; // body bytes read so far
    unsigned status_ = 0;       // the response's status once its header is in
};

/// A command that passes when it exits 0.
class exec_attempt final : public attempt {
public:
    exec_attempt(done_fn done, clk::duration timeout) : attempt(std::move(done)), timeout_(timeout) {}

    void start(const asio::any_io_executor& ex, command cmd) {
        // A probe reads nothing: a command that tried to read the supervisor's stdin would
        // take input meant for someone else, or block.
        cmd.std_in(stdio::null());
        spawn_failure failure;
        child_ = spawn(ex, cmd, failure);
        if (failure) return report_later(ex, false, failure.message());
        auto self = std::static_pointer_cast<exec_attempt>(shared_from_this());
        child_.async_wait_for(timeout_, [self](error_code ec, exit_status status) {
            if (self->over()) return;
            if (ec == errc::timed_out)
                return self->report(false, "timed out after " + short_duration(self->timeout_));
            if (ec) return self->report(false, describe(ec));
            if (status.is_exited())
                return self->report(status.success(), fmt::format("exit code {}", status.code()));
            self->report(false, status.to_string()); // "killed by signal 9 (SIGKILL)", unknown
        });
    }

private:
    void release() override {
        // Destroying the child kills what is left of its tree (a child already reaped costs
        // nothing); its outstanding wait then completes into a handler that only returns.
        child gone = std::move(child_);
    }

    clk::duration timeout_;
    child child_;
};

/// The handle start_probe returns: the attempt is cancelled when it goes.
class attempt_handle final : public probe_attempt {
public:
    explicit attempt_handle(std::shared_ptr<attempt> a) : attempt_(std::move(a)) {}
    ~attempt_handle() override { attempt_->cancel(); }
    attempt_handle(const attempt_handle&) = delete;
    attempt_handle& operator=(const attempt_handle&) = delete;

private:
    std::shared_ptr<attempt> attempt_;
};

} // namespace

std::unique_ptr<probe_attempt> start_probe(boost::asio::any_io_executor ex, const probe& p,
                                           std::function<void(bool ok, std::string detail)> done) {
    if (std::string error = probe_error(p); !error.empty()) {
        auto a = std::make_shared<attempt>(std::move(done));
        a->report_later(ex, false, std::move(error));
        return std::make_unique<attempt_handle>(std::move(a));
    }
    switch (p.type) {
    case probe::kind::tcp:
    case probe::kind::http: {
        std::string host, port, error;
        std::optional<std::string> target;
        if (p.type == probe::kind::tcp) {
            parse_host_port(p.address, host, port, error);
        } else {
            http_url url;
            parse_http_url(p.address, url, error);
            host = std::move(url.host);
            port = std::move(url.port);
            target = std::move(url.target);
        }
        auto a = std::make_shared<net_attempt>(ex, std::move(done), std::move(host), std::move(port),
                                               p.timeout, std::move(target));
        a->start();
        return std::make_unique<attempt_handle>(std::move(a));
    }
    case probe::kind::exec: {
        auto a = std::make_shared<exec_attempt>(std::move(done), p.timeout);
        a->start(ex, *p.program);
        return std::make_unique<attempt_handle>(std::move(a));
    }
    }
    // probe_error refused any other kind above.
    auto a = std::make_shared<attempt>(std::move(done));
    a->report_later(ex, false, "unknown probe type");
    return std::make_unique<attempt_handle>(std::move(a));
}

} // namespace drover::detail
