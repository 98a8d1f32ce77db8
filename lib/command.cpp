#include "drover/command.hpp"

#include <cctype>

#include "drover/env_file.hpp"

namespace drover {

namespace {
const struct {
    const char* name;
    int resource;
} rlimit_table[] = {
    {"cpu", RLIMIT_CPU},           {"fsize", RLIMIT_FSIZE},
    {"data", RLIMIT_DATA},         {"stack", RLIMIT_STACK},
    {"core", RLIMIT_CORE},         {"rss", RLIMIT_RSS},
    {"nproc", RLIMIT_NPROC},       {"nofile", RLIMIT_NOFILE},
    {"memlock", RLIMIT_MEMLOCK},   {"as", RLIMIT_AS},
#if defined(__linux__) // Linux's own; elsewhere these names are unknown limits
    {"locks", RLIMIT_LOCKS},       {"sigpending", RLIMIT_SIGPENDING},
    {"msgqueue", RLIMIT_MSGQUEUE}, {"nice", RLIMIT_NICE},
    {"rtprio", RLIMIT_RTPRIO},     {"rttime", RLIMIT_RTTIME},
#endif
};
} // namespace

std::optional<int> rlimit_resource(std::string_view name) noexcept {
    std::string n;
    for (char ch : name) n.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(ch))));
    if (n.rfind("rlimit_", 0) == 0) n.erase(0, 7);
    for (const auto& e : rlimit_table)
        if (n == e.name) return e.resource;
    return std::nullopt;
}

std::string_view rlimit_name(int resource) noexcept {
    for (const auto& e : rlimit_table)
        if (e.resource == resource) return e.name;
    return {};
}

command& command::env_file(const std::filesystem::path& file) {
    for (auto& [k, v] : read_env_file(file)) env(std::move(k), std::move(v));
    return *this;
}

namespace {

std::string lower(std::string_view s) {
    std::string n;
    for (char ch : s) n.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(ch))));
    return n;
}

// linux/capability.h, in number order (CAP_CHOWN = 0 ... CAP_CHECKPOINT_RESTORE = 40).
constexpr std::string_view capability_names[] = {
    "cap_chown",
    "cap_dac_override",
    "cap_dac_read_search",
    "cap_fowner",
    "cap_fsetid",
    "cap_kill",
    "cap_setgid",
    "cap_setuid",
    "cap_setpcap",
    "cap_linux_immutable",
    "cap_net_bind_service",
    "cap_net_broadcast",
    "cap_net_admin",
    "cap_net_raw",
    "cap_ipc_lock",
    "cap_ipc_owner",
    "cap_sys_module",
    "cap_sys_rawio",
    "cap_sys_chroot",
    "cap_sys_ptrace",
    "cap_sys_pacct",
    "cap_sys_admin",
    "cap_sys_boot",
    "cap_sys_nice",
    "cap_sys_resource",
    "cap_sys_time",
    "cap_sys_tty_config",
    "cap_mknod",
    "cap_lease",
    "cap_audit_write",
    "cap_audit_control",
    "cap_setfcap",
    "cap_mac_override",
    "cap_mac_admin",
    "cap_syslog",
    "cap_wake_alarm",
    "cap_block_suspend",
    "cap_audit_read",
    "cap_perfmon",
    "cap_bpf",
    "cap_checkpoint_restore",
};

constexpr struct {
    std::string_view name;
    namespaces ns;
} namespace_names[] = {
    {"user", namespaces::user},     {"pid", namespaces::pid}, {"mount", namespaces::mount},
    {"net", namespaces::net},       {"uts", namespaces::uts}, {"ipc", namespaces::ipc},
    {"cgroup", namespaces::cgroup},
};

} // namespace

std::optional<int> capability_number(std::string_view name) noexcept try {
    std::string n = lower(name);
    if (n.rfind("cap_", 0) != 0) n.insert(0, "cap_");
    for (std::size_t i = 0; i < std::size(capability_names); ++i)
        if (n == capability_names[i]) return static_cast<int>(i);
    return std::nullopt;
} catch (...) {
    return std::nullopt;
}

std::string_view capability_name(int cap) noexcept {
    if (cap < 0 || static_cast<std::size_t>(cap) >= std::size(capability_names)) return {};
    return capability_names[cap];
}

std::optional<namespaces> parse_namespaces(std::string_view list, std::string* bad) {
    namespaces out = namespaces::none;
    while (true) {
        auto comma = list.find(',');
        std::string item = lower(list.substr(0, comma));
        if (item == "mnt") item = "mount";
        if (item == "network") item = "net";
        bool found = false;
        for (const auto& e : namespace_names)
            if (item == e.name) {
                out = out | e.ns;
                found = true;
            }
        if (!found) {
            if (bad != nullptr) *bad = item;
            return std::nullopt;
        }
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
    return out;
}

std::string to_string(namespaces ns) {
    std::string out;
    for (const auto& e : namespace_names)
        if (any(ns & e.ns)) {
            if (!out.empty()) out += ',';
            out += e.name;
        }
    return out.empty() ? "none" : out;
}

std::vector<shell_syntax_hint> shell_syntax_hints(const command& cmd) {
    std::vector<shell_syntax_hint> out;
    static const struct {
        const char* token;
        bool whole; // the whole argument must be the token
        const char* what;
    } patterns[] = {
        {"|", true, "a pipe '|'"},
        {"||", true, "'||'"},
        {"&&", true, "'&&'"},
        {";", true, "a command separator ';'"},
        {"&", true, "a background '&'"},
        {">", true, "a redirection '>'"},
        {">>", true, "a redirection '>>'"},
        {"<", true, "a redirection '<'"},
        {"2>&1", true, "a redirection '2>&1'"},
        {"|&", true, "'|&'"},
        {"$(", false, "command substitution '$('"},
        {"`", false, "command substitution '`'"},
        {"${", false, "parameter expansion '${'"},
    };
    // A shell named as the program is using a shell on purpose: its script is shell syntax.
    std::string_view prog = cmd.program();
    if (auto slash = prog.rfind('/'); slash != std::string_view::npos) prog.remove_prefix(slash + 1);
    for (std::string_view sh : {"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "busybox"})
        if (prog == sh) return out;
    const auto& args = cmd.args();
    for (std::size_t i = 0; i < args.size(); ++i) {
        for (const auto& p : patterns) {
            bool hit = p.whole ? args[i] == p.token : args[i].find(p.token) != std::string::npos;
            if (hit) {
                out.push_back({i + 1, p.what});
                break;
            }
        }
    }
    return out;
}

} // namespace drover
