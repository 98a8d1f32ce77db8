#include "detail/spawn_thread.hpp"
#include "detail/compat.hpp"
#include "detail/posix.hpp"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>

namespace asio = boost::asio;

namespace drover::detail {

bool on_long_lived_thread(const asio::any_io_executor& ex) noexcept {
    if (on_main_thread()) return true;
    if (auto* io = ex.target<asio::io_context::executor_type>()) return io->running_in_this_thread();
    if (auto* s = ex.target<asio::strand<asio::io_context::executor_type>>())
        return s->get_inner_executor().running_in_this_thread();
    return false;
}

namespace {

struct job {
    const std::function<void()>* fn;
    bool done = false;
};

struct spawn_thread {
    std::mutex m;
    std::condition_variable cv_jobs;
    std::condition_variable cv_done;
    std::deque<job*> jobs;

    spawn_thread() {
        // Block every signal in the new thread, so it never takes a process-directed signal
        // meant for a runner's signalfd (the mask is inherited from the creating thread).
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        std::thread t([this] { loop(); });
        pthread_sigmask(SIG_SETMASK, &old, nullptr);
        name_thread(t.native_handle(), "drover-spawn");
        t.detach();
    }

    void loop() {
        std::unique_lock lock(m);
        for (;;) {
            cv_jobs.wait(lock, [&] { return !jobs.empty(); });
            job* j = jobs.front();
            jobs.pop_front();
            lock.unlock();
            (*j->fn)();
            lock.lock();
            j->done = true;
            cv_done.notify_all();
        }
    }
};

spawn_thread& instance() {
    // Never destroyed: children spawned here must keep their parent thread until exit.
    static spawn_thread* t = new spawn_thread;
    return *t;
}

} // namespace

void run_on_spawn_thread(const std::function<void()>& fn) {
    spawn_thread& t = instance();
    job j{&fn};
    std::unique_lock lock(t.m);
    t.jobs.push_back(&j);
    t.cv_jobs.notify_one();
    t.cv_done.wait(lock, [&] { return j.done; });
}

} // namespace drover::detail
