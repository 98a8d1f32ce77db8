// Runner mode's registry (docs/architecture.md, "Waiting, and who reaps what").
#include "detail/registry.hpp"

#include <unistd.h>

#include <atomic>
#include <unordered_set>

#include "detail/tree.hpp"

namespace drover::detail {

namespace {
std::mutex g_registry_mutex;
std::unordered_set<pid_t> g_live; // guarded by g_registry_mutex
std::atomic<bool> g_runner{false};
std::atomic<const void*> g_orphan_owner{nullptr};
} // namespace

std::mutex& spawn_registry_mutex() noexcept {
    return g_registry_mutex;
}

void registry_add_locked(pid_t pid) {
    g_live.insert(pid);
}

void registry_remove(pid_t pid) noexcept {
    std::lock_guard lock(g_registry_mutex);
    g_live.erase(pid);
}

bool registry_contains_locked(pid_t pid) noexcept {
    return g_live.count(pid) != 0;
}

std::size_t registry_size() noexcept {
    std::lock_guard lock(g_registry_mutex);
    return g_live.size();
}

std::vector<pid_t> unregistered_children() {
    std::vector<pid_t> out;
    std::lock_guard lock(g_registry_mutex);
    for (pid_t p : children_of(::getpid()))
        if (!registry_contains_locked(p)) out.push_back(p);
    return out;
}

bool runner_mode() noexcept {
    return g_runner.load(std::memory_order_acquire);
}

void set_runner_mode() noexcept {
    g_runner.store(true, std::memory_order_release);
}

const void* orphan_owner() noexcept {
    return g_orphan_owner.load(std::memory_order_acquire);
}

void set_orphan_owner(const void* impl) noexcept {
    g_orphan_owner.store(impl, std::memory_order_release);
}

} // namespace drover::detail
