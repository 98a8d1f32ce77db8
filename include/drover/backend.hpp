// drover: which backend this build of the library creates and tracks processes with.
#pragma once

#include <string_view>

namespace drover {

/// The backend, chosen when drover is built (meson option `launcher`; docs/architecture.md,
/// "Backends", has the feature matrix). The public API is the same on both: a feature the
/// backend does not have fails with `errc::not_supported`, naming the feature.
enum class backend_kind {
    /// Linux: the clone3/pidfd launcher; trees in a leaf cgroup or found through /proc;
    /// namespaces, cgroup limits, capabilities, the guard, runner mode, /proc introspection.
    linux_native,
    /// Boost.Process v2's POSIX launcher with drover's own child setup; trees are the child's
    /// process group (`tree_kind::process_group`); POSIX features only.
    portable,
};

/// The backend of this build of the library.
backend_kind backend() noexcept;

/// "linux" or "portable".
std::string_view to_string(backend_kind k) noexcept;

} // namespace drover
