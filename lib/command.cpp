#include "drover/command.hpp"

#include <cctype>

namespace drover {

std::optional<int> rlimit_resource(std::string_view name) noexcept {
    std::string n;
    for (char ch : name) n.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(ch))));
    if (n.rfind("rlimit_", 0) == 0) n.erase(0, 7);
    static const struct {
        const char* name;
        int resource;
    } table[] = {
        {"cpu", RLIMIT_CPU},         {"fsize", RLIMIT_FSIZE},         {"data", RLIMIT_DATA},
        {"stack", RLIMIT_STACK},     {"core", RLIMIT_CORE},           {"rss", RLIMIT_RSS},
        {"nproc", RLIMIT_NPROC},     {"nofile", RLIMIT_NOFILE},       {"memlock", RLIMIT_MEMLOCK},
        {"as", RLIMIT_AS},           {"locks", RLIMIT_LOCKS},         {"sigpending", RLIMIT_SIGPENDING},
        {"msgqueue", RLIMIT_MSGQUEUE}, {"nice", RLIMIT_NICE},         {"rtprio", RLIMIT_RTPRIO},
        {"rttime", RLIMIT_RTTIME},
    };
    for (const auto& e : table)
        if (n == e.name) return e.resource;
    return std::nullopt;
}

std::vector<shell_syntax_hint> shell_syntax_hints(const command& cmd) {
    std::vector<shell_syntax_hint> out;
    static const struct {
        const char* token;
        bool whole; // the whole argument must be the token
        const char* what;
    } patterns[] = {
        {"|", true, "a pipe '|'"},           {"||", true, "'||'"},
        {"&&", true, "'&&'"},                {";", true, "a command separator ';'"},
        {"&", true, "a background '&'"},     {">", true, "a redirection '>'"},
        {">>", true, "a redirection '>>'"},  {"<", true, "a redirection '<'"},
        {"2>&1", true, "a redirection '2>&1'"}, {"|&", true, "'|&'"},
        {"$(", false, "command substitution '$('"}, {"`", false, "command substitution '`'"},
        {"${", false, "parameter expansion '${'"},
    };
    // A shell named as the program is using a shell on purpose: its script is shell syntax.
    std::string_view prog = cmd.program();
    if (auto slash = prog.rfind('/'); slash != std::string_view::npos) prog.remove_prefix(slash + 1);
    for (std::string_view sh : {"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "busybox"})
        if (prog == sh) return out;
    const auto& args = cmd.arguments();
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
