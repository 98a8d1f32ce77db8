#include "drover/run.hpp"

#include <fcntl.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "drover/child.hpp"

namespace asio = boost::asio;

namespace drover {

std::string captured_output::text() const {
    if (!truncated()) return head + tail;
    std::string s;
    s.reserve(head.size() + tail.size() + 48);
    s += head;
    s += "\n[drover: ";
    s += std::to_string(dropped_bytes());
    s += " bytes truncated]\n";
    s += tail;
    return s;
}

namespace {

constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);
using clk = std::chrono::steady_clock;
using clk_point = clk::time_point;

constexpr std::size_t read_size = 256 * 1024;

/// Keeps the first `head_cap` bytes and the last `tail_cap` bytes of a stream in bounded memory.
/// Once the head is full, reads go straight into the tail's ring buffer (no copy).
class bounded_capture {
public:
    bounded_capture(captured_output& out, std::size_t max)
        : out_(out), head_cap_(max / 2), tail_cap_(max - max / 2) {}

    /// Where the next read should go: the scratch buffer while the head fills, then the ring.
    asio::mutable_buffer prepare(std::vector<char>& scratch) {
        direct_ = out_.head.size() == head_cap_ && tail_cap_ >= 4096;
        if (!direct_) return asio::buffer(scratch);
        if (ring_.size() != tail_cap_) ring_.resize(tail_cap_);
        return asio::buffer(ring_.data() + pos_, std::min(read_size, tail_cap_ - pos_));
    }

    /// Takes `n` bytes read into the buffer `prepare` returned.
    void commit(const std::vector<char>& scratch, std::size_t n) {
        if (!direct_) return add(scratch.data(), n);
        out_.total_bytes += n;
        advance(n);
    }

    void finish() {
        if (filled_ < tail_cap_)
            out_.tail.assign(ring_.data(), filled_);
        else
            out_.tail = ring_.substr(pos_) + ring_.substr(0, pos_);
        ring_.clear();
        ring_.shrink_to_fit();
        if (out_.total_bytes == out_.head.size() + out_.tail.size()) { // nothing dropped: one piece
            out_.head += out_.tail;
            out_.tail.clear();
        }
    }

private:
    void add(const char* p, std::size_t n) {
        out_.total_bytes += n;
        std::size_t take = std::min(n, head_cap_ - out_.head.size());
        out_.head.append(p, take);
        p += take;
        n -= take;
        if (n == 0 || tail_cap_ == 0) return;
        if (ring_.size() != tail_cap_) ring_.resize(tail_cap_);
        if (n >= tail_cap_) { // the new bytes alone fill the tail
            std::memcpy(ring_.data(), p + n - tail_cap_, tail_cap_);
            pos_ = 0;
            filled_ = tail_cap_;
            return;
        }
        while (n != 0) { // overwrite the oldest bytes
            std::size_t chunk = std::min(n, tail_cap_ - pos_);
            std::memcpy(ring_.data() + pos_, p, chunk);
            advance(chunk);
            p += chunk;
            n -= chunk;
        }
    }

    void advance(std::size_t n) {
        pos_ = (pos_ + n) % tail_cap_;
        filled_ = std::min(tail_cap_, filled_ + n);
    }

    captured_output& out_;
    std::size_t head_cap_;
    std::size_t tail_cap_;
    std::string ring_;       // tail_cap_ bytes once the head is full
    std::size_t pos_ = 0;    // where the next byte goes
    std::size_t filled_ = 0; // valid bytes: [0, filled_) until the ring wraps, then all
    bool direct_ = false;    // the pending read goes into the ring
};

struct run_state {
    run_state(const asio::any_io_executor& io, command c, run_options o)
        : io(io), ex(asio::make_strand(io)), sync(ex), cmd(std::move(c)), opts(std::move(o)) {}

    asio::any_io_executor io;
    asio::strand<asio::any_io_executor> ex; // every coroutine of one run runs here
    asio::steady_timer sync;                // the drain deadline; readers cancel it when done
    command cmd;
    run_options opts;
    child owned;        // async_run: the child; async_capture: empty
    child* cp = &owned; // the child captured
    run_result r;
    int readers = 0; // capture coroutines still reading
    int writers = 0; // the input writer, while it runs
    bool capture_err = false;

    /// Wakes the main coroutine (on the strand) when a reader or the writer finished.
    void notify() { sync.cancel(); }

    /// Waits on the strand until `done()` holds or `deadline` passes; true if it holds.
    template <typename Pred>
    asio::awaitable<bool> wait_until(Pred done, asio::steady_timer::time_point deadline) {
        while (!done()) {
            if (asio::steady_timer::clock_type::now() >= deadline) co_return false;
            sync.expires_at(deadline);
            co_await sync.async_wait(asio::as_tuple(asio::use_awaitable));
        }
        co_return true;
    }
};

asio::awaitable<void> read_stream(std::shared_ptr<run_state> st, asio::posix::stream_descriptor& d,
                                  captured_output& out) {
    co_await asio::this_coro::throw_if_cancelled(false);
    bounded_capture cap(out, st->opts.max_output);
    // A bigger pipe means fewer wake-ups per megabyte (1 MiB is the default pipe-max-size; an
    // unprivileged user over the pipe-user-pages limit keeps 64 KiB, which is fine).
#if defined(F_SETPIPE_SZ)
    ::fcntl(d.native_handle(), F_SETPIPE_SZ, 1024 * 1024);
#endif
    std::vector<char> buf(read_size);
    for (;;) {
        auto [ec, n] = co_await d.async_read_some(cap.prepare(buf), tuple_awaitable);
        if (n != 0) {
            cap.commit(buf, n);
            if (out.total_bytes > st->opts.max_output && !st->r.output_limit_exceeded) {
                st->r.output_limit_exceeded = true;
                if (st->opts.on_overflow == overflow_policy::kill && st->cp->valid())
                    st->cp->async_kill(asio::detached);
            }
        }
        if (ec) break; // EOF, closed by the drain deadline, or a read error: the stream ends
    }
    cap.finish();
}

asio::awaitable<void> write_input(std::shared_ptr<run_state> st) {
    co_await asio::this_coro::throw_if_cancelled(false);
    auto& in = st->cp->std_in();
    const std::string& data = *st->opts.input;
    auto [ec, n] = co_await in.write(asio::buffer(data), tuple_awaitable);
    if (ec || n != data.size()) st->r.input_broken = true;
    error_code ignored;
    in.close(ignored);
}

/// Starts `body` on the run's strand; when it ends, however it ends (an exception included),
/// `counter` goes down and the main coroutine is woken, so a failing helper cannot hang a run.
void start_helper(const std::shared_ptr<run_state>& st, asio::awaitable<void> body, int run_state::*counter) {
    asio::co_spawn(st->ex, std::move(body), [st, counter](std::exception_ptr) {
        --((*st).*counter);
        st->notify();
    });
}

/// Captures, waits, drains and cleans up `*st->cp`, which runs already.
asio::awaitable<run_result> capture_main(std::shared_ptr<run_state> st, clk_point start) {
    auto& o = st->opts;
    child& c = *st->cp;
    st->r.pid = c.id().value_or(-1);

    st->readers = 1 + (st->capture_err ? 1 : 0);
    st->writers = o.input ? 1 : 0;
    start_helper(st, read_stream(st, c.std_out(), st->r.out), &run_state::readers);
    if (st->capture_err) start_helper(st, read_stream(st, c.std_err(), st->r.err), &run_state::readers);
    if (o.input) start_helper(st, write_input(st), &run_state::writers);

    auto [ec, status] = o.timeout ? co_await c.async_wait_for(*o.timeout, tuple_awaitable)
                                  : co_await c.async_wait(tuple_awaitable);
    st->r.duration = std::chrono::steady_clock::now() - start;
    st->r.status = status;
    st->r.usage = c.usage();
    error_code failure; // reported after the cleanup below, which runs whatever happened
    if (ec == errc::timed_out)
        st->r.timed_out = true;
    else if (ec)
        failure = ec; // operation_aborted: cancelled (the tree was stopped)

    // The main process is gone; what it started may still hold the pipes. Give them the drain
    // grace, then close them and wait for the readers to notice.
    if (!co_await st->wait_until([&] { return st->readers == 0; }, clk::now() + o.drain_grace)) {
        st->r.drain_timed_out = true;
        error_code ignored;
        c.std_out().close(ignored);
        if (st->capture_err) c.std_err().close(ignored);
    }
    // A child that never read all its input: close stdin, so the writer ends too.
    if (st->writers > 0) {
        error_code ignored;
        c.std_in().close(ignored);
    }
    co_await st->wait_until([&] { return st->readers == 0 && st->writers == 0; }, clk::time_point::max());

    // Nothing of the run may outlive it: stop what is left of the tree (stop signal, grace,
    // SIGKILL) and wait until it is gone; this also removes the leaf cgroup.
    st->r.killed_leftovers = !c.tree_pids().empty();
    co_await c.async_stop(tuple_awaitable);

    if (failure) throw boost::system::system_error(failure, "async_run");
    co_return std::move(st->r);
}

asio::awaitable<run_result> run_main(std::shared_ptr<run_state> st) {
    co_await asio::this_coro::throw_if_cancelled(false);
    co_await asio::this_coro::reset_cancellation_state(asio::enable_partial_cancellation());
    auto& o = st->opts;
    command& cmd = st->cmd;
    cmd.std_out(stdio::pipe());
    if (o.merge_stderr)
        cmd.std_err(stdio::to_stdout());
    else if (o.capture_stderr)
        cmd.std_err(stdio::pipe());
    if (o.input) cmd.std_in(stdio::pipe());
    st->capture_err = !o.merge_stderr && o.capture_stderr;

    const auto start = std::chrono::steady_clock::now();
    st->owned = spawn(st->io, cmd); // throws spawn_error
    co_return co_await capture_main(st, start);
}

asio::awaitable<run_result> existing_main(std::shared_ptr<run_state> st) {
    co_await asio::this_coro::throw_if_cancelled(false);
    co_await asio::this_coro::reset_cancellation_state(asio::enable_partial_cancellation());
    const auto start = std::chrono::steady_clock::now();
    child& c = *st->cp;
    st->capture_err = st->opts.capture_stderr;
    if (!c.valid()) throw boost::system::system_error(errc::not_running, "async_capture");
    // Every stream the options name must be a pipe (these throw errc::not_piped).
    c.std_out();
    if (st->capture_err) c.std_err();
    if (st->opts.input) c.std_in();
    co_return co_await capture_main(st, start);
}

} // namespace

void detail::initiate_run(const asio::any_io_executor& ex, command cmd, run_options opts,
                          asio::any_completion_handler<run_signature> handler) {
    auto st = std::make_shared<run_state>(ex, std::move(cmd), std::move(opts));
    auto strand = st->ex;
    asio::co_spawn(strand, run_main(std::move(st)), std::move(handler));
}

void detail::initiate_capture(child& c, run_options opts,
                              asio::any_completion_handler<capture_signature> handler) {
    auto st = std::make_shared<run_state>(c.get_executor(), command(std::string{}), std::move(opts));
    st->cp = &c;
    auto strand = st->ex;
    // The failure becomes its code; the handler's cancellation slot and executor are kept.
    auto slot = asio::get_associated_cancellation_slot(handler);
    auto hex = asio::get_associated_executor(handler, strand);
    asio::co_spawn(strand, existing_main(std::move(st)),
                   asio::bind_cancellation_slot(
                       slot, asio::bind_executor(
                                 hex, [h = std::move(handler)](std::exception_ptr e, run_result r) mutable {
                                     error_code ec;
                                     if (e) {
                                         try {
                                             std::rethrow_exception(e);
                                         } catch (const boost::system::system_error& se) {
                                             ec = se.code();
                                         } catch (...) { // out of memory
                                             ec = make_error_code(boost::system::errc::not_enough_memory);
                                         }
                                         r = run_result{};
                                     }
                                     std::move(h)(ec, std::move(r));
                                 })));
}

} // namespace drover
