#include "detail/prepare.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <optional>
#include <cstdlib>
#include <cstring>
#include <unordered_map>
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
    return !k.empty() && k.find('=') == std::string_view::npos && k.find('\0') == std::string_view::npos;
}

} // namespace

bool is_supervisor_variable(std::string_view key) noexcept {
    // The supervisor's own channel to systemd and the sockets and watchdog given to it: a child
    // that inherited them would talk to systemd as if it were the supervisor.
    static constexpr std::string_view own[] = {"NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC",
                                               "LISTEN_PID",    "LISTEN_FDS",   "LISTEN_FDNAMES"};
    for (auto k : own)
        if (key == k) return true;
    return key.rfind("DROVER_", 0) == 0;
}

namespace {

template <class T>
bool parse_id(const std::string& s, T& out) noexcept {
    if (s.empty() || s.size() > 10) return false;
    unsigned long v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || ptr != s.data() + s.size() || v >= 0xffffffffUL) return false;
    out = static_cast<T>(v);
    return true;
}

bool lookup_group(const std::string& name, gid_t& out, spawn_failure& f) {
    if (name.find('\0') != std::string::npos)
        return fail(f, errc::invalid_command, spawn_stage::prepare, "group name contains a NUL byte");
    if (parse_id(name, out)) return true;
    std::vector<char> buf(4096);
    for (;;) {
        struct group gr {};
        struct group* res = nullptr;
        int e = ::getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &res);
        if (e == ERANGE && buf.size() < (1U << 20)) {
            buf.resize(buf.size() * 4);
            continue;
        }
        if (res == nullptr)
            return fail(f, errc::invalid_command, spawn_stage::prepare,
                        "no group '" + name + "' in the group database" +
                            (e != 0 ? " (" + std::string(std::strerror(e)) + ")" : ""));
        out = gr.gr_gid;
        return true;
    }
}

} // namespace

bool resolve_identity(const command& cmd, identity& out, spawn_failure& f) {
    out = identity{};
    std::string user_name; // for getgrouplist
    std::optional<gid_t> user_gid;
    if (const auto& u = cmd.user()) {
        if (u->empty() || u->find('\0') != std::string::npos)
            return fail(f, errc::invalid_command, spawn_stage::prepare,
                        "user name is empty or contains a NUL byte");
        std::vector<char> buf(4096);
        struct passwd pw {};
        struct passwd* res = nullptr;
        uid_t uid = 0;
        bool numeric = parse_id(*u, uid);
        for (;;) {
            int e = numeric ? ::getpwuid_r(uid, &pw, buf.data(), buf.size(), &res)
                            : ::getpwnam_r(u->c_str(), &pw, buf.data(), buf.size(), &res);
            if (e == ERANGE && buf.size() < (1U << 20)) {
                buf.resize(buf.size() * 4);
                continue;
            }
            if (res == nullptr && !numeric)
                return fail(f, errc::invalid_command, spawn_stage::prepare,
                            "no user '" + *u + "' in the user database" +
                                (e != 0 ? " (" + std::string(std::strerror(e)) + ")" : ""));
            break;
        }
        if (res != nullptr) {
            uid = res->pw_uid;
            user_name = res->pw_name;
            user_gid = res->pw_gid;
        }
        out.uid = uid;
        out.description =
            "user '" + (user_name.empty() ? *u : user_name) + "' (uid " + std::to_string(uid) + ")";
    }
    if (const auto& g = cmd.group()) {
        gid_t gid = 0;
        if (!lookup_group(*g, gid, f)) return false;
        out.gid = gid;
        if (!out.description.empty()) out.description += ", ";
        out.description += "group '" + *g + "' (gid " + std::to_string(gid) + ")";
    } else if (out.uid) {
        if (!user_gid)
            return fail(f, errc::invalid_command, spawn_stage::prepare,
                        "uid " + std::to_string(*out.uid) +
                            " has no entry in the user database, so its group is unknown: give a group too");
        out.gid = user_gid;
    }
    if (const auto& gs = cmd.supplementary_groups()) {
        std::vector<gid_t> list;
        for (const auto& g : *gs) {
            gid_t gid = 0;
            if (!lookup_group(g, gid, f)) return false;
            list.push_back(gid);
        }
        out.groups = std::move(list);
    } else if (!user_name.empty()) {
        int n = 64;
        std::vector<gid_t> list(static_cast<std::size_t>(n));
#if defined(__APPLE__) // its getgrouplist takes ints, and does not say how many it needs
        const auto grouplist = [&] {
            return ::getgrouplist(user_name.c_str(), static_cast<int>(*out.gid),
                                  reinterpret_cast<int*>(list.data()), &n);
        };
#else
        const auto grouplist = [&] { return ::getgrouplist(user_name.c_str(), *out.gid, list.data(), &n); };
#endif
        while (grouplist() < 0) {
            if (n > 65536)
                return fail(f, errc::invalid_command, spawn_stage::prepare,
                            "too many groups for '" + user_name + "'");
            list.resize(std::max(static_cast<std::size_t>(n) + 1, list.size() * 2));
            n = static_cast<int>(list.size());
        }
        list.resize(static_cast<std::size_t>(n));
        out.groups = std::move(list);
    } else if (out.gid && ::geteuid() == 0) {
        // Only a group, as root: root's own supplementary groups are not carried over. (An
        // unprivileged caller keeps its own, which it could not change anyway.)
        out.groups = std::vector<gid_t>{};
    }
    return true;
}

const std::string* find_env(const std::vector<std::string>& env, std::string_view key) noexcept {
    for (const auto& e : env)
        if (key_of(e) == key && e.size() > key.size()) return &e;
    return nullptr;
}

bool build_environment(const command& cmd, char* const* parent_env, std::vector<std::string>& out,
                       spawn_failure& f) {
    out.clear();
    // Base: the parent's environment restricted by the base mode. A key given twice counts
    // once, with its last value (the one rule for duplicates everywhere: Go, Python and the
    // shells agree; glibc's getenv alone takes the first).
    if (cmd.environment_base() != command::env_base::empty && parent_env != nullptr) {
        std::unordered_map<std::string_view, std::size_t> index; // key -> position in out
        std::unordered_set<std::string_view> keep(cmd.env_keep().begin(), cmd.env_keep().end());
        for (char* const* p = parent_env; *p != nullptr; ++p) {
            std::string_view entry{*p};
            if (entry.find('=') == std::string_view::npos) continue; // malformed: no value
            auto key = key_of(entry);
            if (key.empty()) continue;
            if (cmd.environment_base() == command::env_base::keep_list) {
                if (!keep.contains(key)) continue;
            } else if (is_supervisor_variable(key)) {
                continue;
            }
            auto [it, fresh] = index.try_emplace(key, out.size());
            if (fresh)
                out.emplace_back(entry);
            else
                out[it->second].assign(entry);
        }
    }
    for (const auto& kv : cmd.env_keep())
        if (!valid_key(kv))
            return fail(f, errc::invalid_command, spawn_stage::prepare,
                        "invalid environment key '" + kv + "' in env_keep");
    if (cmd.env_ops().empty()) return true;
    // Apply the operations in order, in linear time (an env file may hold many thousands): a
    // set moves the key to the end, a remove drops it; dead slots are compacted at the end.
    std::vector<std::optional<std::string>> slots(out.begin(), out.end());
    std::unordered_map<std::string, std::size_t> where;
    for (std::size_t i = 0; i < slots.size(); ++i) where.emplace(std::string(key_of(*slots[i])), i);
    for (const auto& op : cmd.env_ops()) {
        if (!valid_key(op.key))
            return fail(f, errc::invalid_command, spawn_stage::prepare,
                        "invalid environment key '" + op.key + "'");
        if (op.value && op.value->find('\0') != std::string::npos)
            return fail(f, errc::invalid_command, spawn_stage::prepare,
                        "environment value of '" + op.key + "' contains a NUL byte");
        if (auto it = where.find(op.key); it != where.end()) {
            slots[it->second].reset();
            where.erase(it);
        }
        if (op.value) {
            where.emplace(op.key, slots.size());
            slots.emplace_back(op.key + "=" + *op.value);
        }
    }
    out.clear();
    for (auto& s : slots)
        if (s) out.push_back(std::move(*s));
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
    if (program.empty()) return fail(f, errc::invalid_command, spawn_stage::prepare, "empty program name");
    if (program.find('\0') != std::string::npos)
        return fail(f, errc::invalid_command, spawn_stage::prepare, "program name contains a NUL byte");
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
