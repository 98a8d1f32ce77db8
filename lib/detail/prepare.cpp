#include "detail/prepare.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <unordered_set>

namespace drover::detail {
namespace {

std::string_view key_of(std::string_view entry) noexcept {
    auto eq = entry.find('=');
    return eq == std::string_view::npos ? entry : entry.substr(0, eq);
}

bool fail(spawn_failure& f, error_code ec, spawn_stage stage, std::string detail) {
    f.code = ec;
    f.stage = stage;
    f.detail = std::move(detail);
    return false;
}

bool valid_key(std::string_view k) noexcept {
    return !k.empty() && k.find('=') == std::string_view::npos &&
           k.find('\0') == std::string_view::npos;
}

} // namespace

const std::string* find_env(const std::vector<std::string>& env, std::string_view key) noexcept {
    for (const auto& e : env)
        if (key_of(e) == key && e.size() > key.size()) return &e;
    return nullptr;
}

bool build_environment(const command& cmd, char* const* parent_env, std::vector<std::string>& out,
                       spawn_failure& f) {
    out.clear();
    // Base: the parent's environment (first occurrence of a key wins, as the parent's getenv
    // sees it), restricted by the base mode.
    if (cmd.environment_base() != command::env_base::empty && parent_env != nullptr) {
        std::unordered_set<std::string_view> seen;
        std::unordered_set<std::string_view> keep(cmd.kept_env().begin(), cmd.kept_env().end());
        for (char* const* p = parent_env; *p != nullptr; ++p) {
            std::string_view entry{*p};
            if (entry.find('=') == std::string_view::npos) continue; // malformed: no value
            auto key = key_of(entry);
            if (key.empty() || !seen.insert(key).second) continue;
            if (cmd.environment_base() == command::env_base::keep_list) {
                if (!keep.contains(key)) continue;
            } else if (key == "NOTIFY_SOCKET") {
                continue; // the supervisor's own channel to systemd, never its children's
            }
            out.emplace_back(entry);
        }
    }
    for (const auto& kv : cmd.kept_env())
        if (!valid_key(kv))
            return fail(f, errc::invalid_command, spawn_stage::prepare,
                        "invalid environment key '" + kv + "' in env_keep");
    for (const auto& op : cmd.env_ops()) {
        if (!valid_key(op.key))
            return fail(f, errc::invalid_command, spawn_stage::prepare,
                        "invalid environment key '" + op.key + "'");
        if (op.value && op.value->find('\0') != std::string::npos)
            return fail(f, errc::invalid_command, spawn_stage::prepare,
                        "environment value of '" + op.key + "' contains a NUL byte");
        std::erase_if(out, [&](const std::string& e) { return key_of(e) == op.key; });
        if (op.value) out.push_back(op.key + "=" + *op.value);
    }
    return true;
}

std::string search_path_for(const std::vector<std::string>& child_env) {
    if (auto* e = find_env(child_env, "PATH")) return e->substr(5);
    if (const char* p = std::getenv("PATH")) return p;
    std::string def(256, '\0');
    auto n = ::confstr(_CS_PATH, def.data(), def.size());
    if (n == 0 || n > def.size()) return "/bin:/usr/bin";
    def.resize(n - 1);
    return def;
}

bool resolve_program(const std::string& program, std::string_view path_list, std::string& out,
                     spawn_failure& f) {
    if (program.empty())
        return fail(f, errc::invalid_command, spawn_stage::prepare, "empty program name");
    if (program.find('\0') != std::string::npos)
        return fail(f, errc::invalid_command, spawn_stage::prepare,
                    "program name contains a NUL byte");
    if (program.find('/') != std::string::npos) {
        out = program;
        return true;
    }
    bool saw_denied = false;
    std::string denied_path;
    std::string candidate;
    while (!path_list.empty()) {
        auto colon = path_list.find(':');
        auto dir = path_list.substr(0, colon);
        path_list = colon == std::string_view::npos ? std::string_view{} : path_list.substr(colon + 1);
        // An empty entry means "." to execvp; a relative one depends on the cwd. Neither is
        // ever searched: a bare name must not run whatever sits in the current directory.
        if (dir.empty() || dir.front() != '/') continue;
        candidate.assign(dir);
        if (candidate.back() != '/') candidate.push_back('/');
        candidate += program;
        struct stat st {};
        if (::stat(candidate.c_str(), &st) != 0) continue;
        if (S_ISREG(st.st_mode) && ::faccessat(AT_FDCWD, candidate.c_str(), X_OK, AT_EACCESS) == 0) {
            out = candidate;
            return true;
        }
        if (!saw_denied) {
            saw_denied = true;
            denied_path = candidate;
        }
    }
    if (saw_denied)
        return fail(f, error_code(EACCES, boost::system::system_category()), spawn_stage::resolve,
                    denied_path + " is not an executable file");
    return fail(f, error_code(ENOENT, boost::system::system_category()), spawn_stage::resolve,
                "not found on PATH");
}

} // namespace drover::detail
