// drover (the program): reading drover.toml and Procfiles (docs/config.md).
#include "config.hpp"

#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string_view>
#include <system_error>
#include <utility>

#include <toml++/toml.h>

#include "drover/env_file.hpp"
#include "drover/escape.hpp"
#include "drover/supervisor.hpp"
#include "name_services.hpp"
#include "parse.hpp"

namespace fs = std::filesystem;
using namespace std::string_literals;

namespace drover::up {

namespace {

using getenv_fn = std::function<std::optional<std::string>(const std::string&)>;
using clk = std::chrono::steady_clock;

std::string format_error(const std::string& file, int line, int column, const std::string& key,
                         const std::string& message) {
    std::string s = file;
    if (line > 0) s += ":" + std::to_string(line);
    if (line > 0 && column > 0) s += ":" + std::to_string(column);
    s += ": ";
    if (!key.empty()) s += key + ": ";
    return s + message;
}

// The candidate nearest to `word`, if near enough to be a likely typo: at most 2 edits, and
// at most half the longer word's length (so "db" suggests "bd" but not "ui").
template <typename Range>
std::optional<std::string> nearest(std::string_view word, const Range& candidates) {
    std::optional<std::string> best;
    std::size_t best_d = 3;
    for (const auto& c : candidates) {
        std::string_view cv(c);
        std::size_t d = cli::typo_distance(word, cv);
        if (d < best_d && d * 2 <= std::max(word.size(), cv.size())) best_d = d, best = std::string(cv);
    }
    return best;
}

std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates) {
    if (auto n = nearest(word, candidates)) return " (did you mean '" + *n + "'?)";
    return {};
}

std::string type_name(const toml::node& n) {
    switch (n.type()) {
    case toml::node_type::table:
        return "a table";
    case toml::node_type::array:
        return "an array";
    case toml::node_type::string:
        return "a string";
    case toml::node_type::integer:
        return "an integer";
    case toml::node_type::floating_point:
        return "a floating-point number";
    case toml::node_type::boolean:
        return "a boolean";
    case toml::node_type::date:
        return "a date";
    case toml::node_type::time:
        return "a time";
    case toml::node_type::date_time:
        return "a date-time";
    default:
        return "nothing";
    }
}

bool before(const toml::source_region& a, const toml::source_region& b) {
    return std::pair(a.begin.line, a.begin.column) < std::pair(b.begin.line, b.begin.column);
}

// A table's entries in file order (toml++ keeps them sorted by name).
std::vector<std::pair<const toml::key*, const toml::node*>> in_file_order(const toml::table& t) {
    std::vector<std::pair<const toml::key*, const toml::node*>> v;
    for (auto&& [k, n] : t) v.emplace_back(&k, &n);
    std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) {
        return before(a.first->source(), b.first->source());
    });
    return v;
}

bool valid_variable_name(std::string_view s) {
    if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
    return std::all_of(s.begin(), s.end(),
                       [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

// Whether a user or group name exists (a number is taken as an id and not checked: a uid
// without a passwd entry is a valid identity).
bool is_number(const std::string& s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}
bool user_exists(const std::string& name) {
    std::vector<char> buf(16384);
    passwd pw{}, *out = nullptr;
    return getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &out) == 0 && out != nullptr;
}
bool group_exists(const std::string& name) {
    std::vector<char> buf(65536);
    group gr{}, *out = nullptr;
    return getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &out) == 0 && out != nullptr;
}
// After "no user 'x' on this system": where a static drover looks names up (name_services.hpp).
std::string note_of_names() {
    const char* note = drover::cli::name_service_note();
    return *note ? std::string(" (") + note + ")" : std::string();
}

// An env file's error as a config key's message: a read failure says so, a syntax error keeps
// the env file's own line ("FILE:LINE: MESSAGE").
std::string env_file_message(const env_file_error& e) {
    return e.line() == 0 ? "cannot read "s + e.what() : "in "s + e.what();
}

// ---------------------------------------------------------------------------------------------
// drover.toml

const std::vector<std::string> top_keys = {"service", "group", "drover"};
const std::vector<std::string> drover_keys = {"exit_on_failure", "shutdown_grace"};
const std::vector<std::string> service_keys = {
    "command", "shell",   "cwd",           "env",     "env_file",    "user",           "group",
    "umask",   "restart", "success_codes", "backoff", "start_limit", "stop",           "depends_on",
    "ready",   "health",  "watchdog",      "log",     "output",      "exit_on_failure"};
const std::vector<std::string> group_keys = {"services", "strategy"};
const std::vector<std::string> backoff_keys = {"initial", "max", "jitter", "reset_after"};
const std::vector<std::string> start_limit_keys = {"burst", "interval", "keep_retrying"};
const std::vector<std::string> stop_keys = {"signal", "grace"};
const std::vector<std::string> ready_kinds = {"log", "tcp", "http", "exec", "notify", "fd"};
const std::vector<std::string> ready_keys = {"log",    "tcp", "http",    "exec",
                                             "notify", "fd",  "timeout", "interval"};
const std::vector<std::string> health_kinds = {"http", "tcp", "exec"};
const std::vector<std::string> health_keys = {"http",    "tcp",           "exec",    "interval",
                                              "timeout", "initial_delay", "failures"};
const std::vector<std::string> log_keys = {"file", "max_size", "keep"};
const std::vector<std::string> output_keys = {"keep_lines", "max_line"};
const std::vector<std::string> dependency_keys = {"condition", "restart_with"};
const std::vector<std::string> restart_values = {"no", "on-failure", "always"};
const std::vector<std::string> condition_values = {"started", "ready", "healthy", "completed",
                                                   "completed_successfully"};
const std::vector<std::string> strategy_values = {"one_for_one", "one_for_all", "rest_for_one"};

std::vector<std::string> signal_names() {
    std::vector<std::string> v;
    for (int sig = 1; sig < NSIG; ++sig)
        if (const char* name = sigabbrev_np(sig)) v.emplace_back(name);
    return v;
}

class toml_reader {
public:
    toml_reader(std::string file, fs::path dir, getenv_fn getenv)
        : file_(std::move(file)), dir_(std::move(dir)), getenv_(std::move(getenv)) {}

    config read(const toml::table& root);

private:
    std::string file_;
    fs::path dir_;
    getenv_fn getenv_;
    // Where each key was, for the supervisor's errors (which name a service and a field).
    std::map<std::string, toml::source_region> where_;

    [[noreturn]] void fail(const toml::source_region& at, const std::string& key,
                           const std::string& message) {
        throw config_error(file_, static_cast<int>(at.begin.line), static_cast<int>(at.begin.column), key,
                           message);
    }
    [[noreturn]] void fail(const toml::node& at, const std::string& key, const std::string& message) {
        fail(at.source(), key, message);
    }
    [[noreturn]] void wrong_type(const toml::node& n, const std::string& key, const std::string& expected) {
        fail(n, key, "expected " + expected + ", found " + type_name(n));
    }

    void check_keys(const toml::table& t, const std::string& path, const std::vector<std::string>& allowed) {
        for (auto [k, n] : in_file_order(t)) {
            if (std::find(allowed.begin(), allowed.end(), std::string(k->str())) != allowed.end()) continue;
            std::string msg = "unknown key '" + escape(std::string(k->str())) + "'";
            if (auto near = nearest(std::string(k->str()), allowed))
                msg += " (did you mean '" + *near + "'?)";
            else {
                msg += "; the keys are:";
                for (std::size_t i = 0; i < allowed.size(); ++i) msg += (i ? ", " : " ") + allowed[i];
            }
            fail(k->source(), path.empty() ? std::string(k->str()) : path + "." + std::string(k->str()), msg);
        }
    }

    const toml::table& want_table(const toml::node& n, const std::string& key) {
        if (auto t = n.as_table()) return *t;
        wrong_type(n, key, "a table");
    }
    const toml::array& want_array(const toml::node& n, const std::string& key) {
        if (auto a = n.as_array()) return *a;
        wrong_type(n, key, "an array");
    }
    std::string want_string(const toml::node& n, const std::string& key) {
        if (auto s = n.as_string()) return s->get();
        wrong_type(n, key, "a string");
    }
    bool want_bool(const toml::node& n, const std::string& key) {
        if (auto b = n.as_boolean()) return b->get();
        wrong_type(n, key, "a boolean (true or false)");
    }
    std::int64_t want_int(const toml::node& n, const std::string& key, std::int64_t min, std::int64_t max) {
        auto i = n.as_integer();
        if (!i) wrong_type(n, key, "an integer");
        if (i->get() < min || i->get() > max)
            fail(n, key,
                 std::to_string(i->get()) + " is outside " + std::to_string(min) + ".." +
                     std::to_string(max));
        return i->get();
    }
    std::vector<std::string> want_strings(const toml::node& n, const std::string& key, bool expand_them) {
        const auto& a = want_array(n, key);
        std::vector<std::string> v;
        for (std::size_t i = 0; i < a.size(); ++i) {
            std::string ki = key + "[" + std::to_string(i) + "]";
            std::string s = want_string(a[i], ki);
            v.push_back(expand_them ? expand(s, a[i], ki) : s);
        }
        return v;
    }
    std::string pick(const toml::node& n, const std::string& key, const std::vector<std::string>& values) {
        std::string s = want_string(n, key);
        if (std::find(values.begin(), values.end(), s) != values.end()) return s;
        std::string msg = "unknown value \"" + escape(s) + "\"";
        if (auto near = nearest(s, values))
            msg += " (did you mean \"" + *near + "\"?)";
        else {
            msg += "; one of:";
            for (std::size_t i = 0; i < values.size(); ++i) msg += (i ? ", \"" : " \"") + values[i] + "\"";
        }
        fail(n, key, msg);
    }
    clk::duration duration(const toml::node& n, const std::string& key) {
        if (n.is_integer() || n.is_floating_point())
            fail(n, key, "durations are strings with a unit, like \"10s\" (found a number)");
        std::string s = want_string(n, key);
        auto r = cli::read_duration(s);
        if (!r.value) fail(n, key, "duration \"" + escape(s) + "\" " + r.problem);
        return std::chrono::duration_cast<clk::duration>(*r.value);
    }
    std::size_t size(const toml::node& n, const std::string& key) {
        if (auto i = n.as_integer()) {
            if (i->get() < 0) fail(n, key, "a size cannot be negative");
            return static_cast<std::size_t>(i->get());
        }
        if (!n.is_string()) wrong_type(n, key, "a size (a string like \"10MiB\", or a number of bytes)");
        std::string s = n.as_string()->get();
        auto v = cli::parse_size(s);
        if (!v)
            fail(n, key,
                 "\"" + escape(s) +
                     "\" is not a size (a number of bytes, optionally with K, M or G: \"16KiB\", "
                     "\"10MiB\")");
        return *v;
    }

    std::string expand(const std::string& s, const toml::node& at, const std::string& key);
    fs::path resolve(const std::string& p) const {
        fs::path path(p);
        return path.is_absolute() ? path : (dir_ / path).lexically_normal();
    }

    service read_service(const std::string& name, const toml::table& t, service_options& opts,
                         bool global_eof);
    readiness read_ready(const toml::table& t, const std::string& key, const fs::path& cwd);
    health_check read_health(const toml::table& t, const std::string& key, const fs::path& cwd);
    probe read_probe(const toml::table& t, const std::string& key, const std::string& kind,
                     const fs::path& cwd);
    struct dep_site {
        std::string name;
        toml::source_region at;
        std::string key;
    };
    std::vector<dep_site> dep_sites_;
    void read_depends_on(const toml::node& n, const std::string& key, service& s);
};

// ${VAR}, ${VAR:-default}, $$; any other '$' stays as written (a shell line's $HOME is the
// shell's business).
std::string toml_reader::expand(const std::string& s, const toml::node& at, const std::string& key) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '$' || i + 1 == s.size()) {
            out += s[i];
            continue;
        }
        if (s[i + 1] == '$') {
            out += '$';
            ++i;
            continue;
        }
        if (s[i + 1] != '{') {
            out += s[i];
            continue;
        }
        auto close = s.find('}', i + 2);
        if (close == std::string::npos)
            fail(at, key, "'${' without a closing '}' (write '$$' for a literal '$')");
        std::string inner = s.substr(i + 2, close - i - 2);
        std::optional<std::string> fallback;
        if (auto sep = inner.find(":-"); sep != std::string::npos) {
            fallback = inner.substr(sep + 2);
            inner.resize(sep);
        }
        if (!valid_variable_name(inner))
            fail(at, key,
                 "'${" + escape(inner) +
                     "}' is not a variable name (letters, digits and '_'; "
                     "write '$$' for a literal '$')");
        std::optional<std::string> value = getenv_(inner);
        if (fallback && (!value || value->empty())) value = fallback;
        if (!value)
            fail(at, key,
                 "environment variable " + inner + " is not set (give a default: ${" + inner + ":-value})");
        out += *value;
        i = close;
    }
    return out;
}

probe toml_reader::read_probe(const toml::table& t, const std::string& key, const std::string& kind,
                              const fs::path& cwd) {
    const toml::node& n = *t.get(kind);
    std::string k = key + "." + kind;
    if (kind == "tcp") return probe::tcp(expand(want_string(n, k), n, k));
    if (kind == "http") return probe::http(expand(want_string(n, k), n, k));
    auto argv = want_strings(n, k, true);
    if (argv.empty() || argv[0].empty()) fail(n, k, "needs a program: [\"prog\", \"arg\", ...]");
    drover::command c(argv[0], std::vector<std::string>(argv.begin() + 1, argv.end()));
    c.cwd(cwd);
    // A check that hangs is stopped at its timeout; a short grace keeps its result from being
    // late by the default 10 s when it ignores SIGTERM.
    c.stop_grace(std::chrono::seconds(1));
    return probe::exec(std::move(c));
}

readiness toml_reader::read_ready(const toml::table& t, const std::string& key, const fs::path& cwd) {
    check_keys(t, key, ready_keys);
    const toml::key* kind_key = nullptr;
    for (auto [k, n] : in_file_order(t)) {
        if (std::find(ready_kinds.begin(), ready_kinds.end(), std::string(k->str())) == ready_kinds.end())
            continue;
        if (kind_key)
            fail(k->source(), key + "." + std::string(k->str()),
                 "a service has one readiness check: '" + std::string(kind_key->str()) + "' is already set");
        kind_key = k;
    }
    if (!kind_key) fail(t, key, "says nothing to wait for: set one of log, tcp, http, exec, notify or fd");
    const std::string kind = std::string(kind_key->str());
    const toml::node& n = *t.get(kind);
    std::string k = key + "." + kind;
    readiness r;
    if (kind == "log") {
        r = readiness::log(want_string(n, k));
    } else if (kind == "notify") {
        if (!want_bool(n, k)) fail(n, k, "only notify = true means something (leave ready out for no check)");
        r = readiness::notify();
    } else if (kind == "fd") {
        r = readiness::fd(static_cast<int>(want_int(n, k, 3, 1023)));
    } else {
        r = readiness::of(read_probe(t, key, kind, cwd));
    }
    where_[key] = n.source();
    if (auto v = t.get("timeout"))
        r.timeout = duration(*v, key + ".timeout"), where_[key + ".timeout"] = v->source();
    if (auto v = t.get("interval")) {
        r.interval = duration(*v, key + ".interval");
        where_[key + ".interval"] = v->source();
    }
    return r;
}

health_check toml_reader::read_health(const toml::table& t, const std::string& key, const fs::path& cwd) {
    check_keys(t, key, health_keys);
    const toml::key* kind_key = nullptr;
    for (auto [k, n] : in_file_order(t)) {
        if (std::find(health_kinds.begin(), health_kinds.end(), std::string(k->str())) == health_kinds.end())
            continue;
        if (kind_key)
            fail(k->source(), key + "." + std::string(k->str()),
                 "a health check has one probe: '" + std::string(kind_key->str()) + "' is already set");
        kind_key = k;
    }
    if (!kind_key) fail(t, key, "says nothing to check: set one of http, tcp or exec");
    health_check h;
    h.check = read_probe(t, key, std::string(kind_key->str()), cwd);
    where_[key] = t.get(std::string(kind_key->str()))->source();
    if (auto v = t.get("interval"))
        h.interval = duration(*v, key + ".interval"), where_[key + ".interval"] = v->source();
    if (auto v = t.get("timeout")) h.check.timeout = duration(*v, key + ".timeout");
    if (auto v = t.get("initial_delay")) {
        h.initial_delay = duration(*v, key + ".initial_delay");
        where_[key + ".initial_delay"] = v->source();
    }
    if (auto v = t.get("failures")) {
        h.failures = static_cast<unsigned>(want_int(*v, key + ".failures", 1, 1000000));
    }
    return h;
}

void toml_reader::read_depends_on(const toml::node& n, const std::string& key, service& s) {
    auto condition = [&](const toml::node& v, const std::string& k) {
        std::string c = pick(v, k, condition_values);
        auto it = std::find(condition_values.begin(), condition_values.end(), c);
        return static_cast<dependency_condition>(it - condition_values.begin());
    };
    if (auto a = n.as_array()) {
        for (std::size_t i = 0; i < a->size(); ++i) {
            std::string k = key + "[" + std::to_string(i) + "]";
            dependency d;
            d.service = want_string((*a)[i], k);
            dep_sites_.push_back({d.service, (*a)[i].source(), k});
            s.depends_on.push_back(std::move(d));
        }
        return;
    }
    if (!n.is_table()) wrong_type(n, key, "an array of service names or a table { name = \"condition\" }");
    for (auto [dk, dn] : in_file_order(*n.as_table())) {
        std::string k = key + "." + std::string(dk->str());
        dependency d;
        d.service = std::string(dk->str());
        if (dn->is_string()) {
            d.condition = condition(*dn, k);
        } else if (auto dt = dn->as_table()) {
            check_keys(*dt, k, dependency_keys);
            if (auto c = dt->get("condition")) d.condition = condition(*c, k + ".condition");
            if (auto r = dt->get("restart_with")) d.restart_with = want_bool(*r, k + ".restart_with");
        } else {
            wrong_type(*dn, k, "a condition (\"ready\") or a table { condition = ..., restart_with = ... }");
        }
        dep_sites_.push_back({d.service, dk->source(), k});
        s.depends_on.push_back(std::move(d));
    }
}

service toml_reader::read_service(const std::string& name, const toml::table& t, service_options& opts,
                                  bool global_eof) {
    const std::string key = "service." + name;
    where_[key] = t.source();
    check_keys(t, key, service_keys);
    service s;
    s.name = name;
    auto cmd_n = t.get("command");
    auto sh_n = t.get("shell");
    if (cmd_n && sh_n) {
        const toml::node& later = before(cmd_n->source(), sh_n->source()) ? *sh_n : *cmd_n;
        fail(later, key + (&later == sh_n ? ".shell" : ".command"), "set either command or shell, not both");
    }
    if (cmd_n) {
        auto argv = want_strings(*cmd_n, key + ".command", true);
        if (argv.empty())
            fail(*cmd_n, key + ".command",
                 "is empty: give the program and its arguments, [\"prog\", \"arg\"]");
        if (argv[0].empty()) fail(*cmd_n, key + ".command", "the program (the first element) is empty");
        s.command = drover::command(argv[0], std::vector<std::string>(argv.begin() + 1, argv.end()));
        where_[key + ".command"] = cmd_n->source();
    } else if (sh_n) {
        std::string line = expand(want_string(*sh_n, key + ".shell"), *sh_n, key + ".shell");
        if (line.empty()) fail(*sh_n, key + ".shell", "is empty");
        s.command = drover::command::shell(std::move(line));
        where_[key + ".command"] = sh_n->source();
    } else {
        fail(t, key, "has no command: set command = [\"prog\", \"arg\"] or shell = \"a shell line\"");
    }

    fs::path cwd = dir_;
    if (auto n = t.get("cwd")) {
        std::string c = expand(want_string(*n, key + ".cwd"), *n, key + ".cwd");
        if (c.empty()) fail(*n, key + ".cwd", "is empty");
        cwd = resolve(c);
    }
    s.command.cwd(cwd);

    // The env files first, in order, then env: a value written in the config wins.
    if (auto n = t.get("env_file")) {
        std::vector<std::pair<const toml::node*, std::string>> files;
        if (n->is_string())
            files.emplace_back(n, n->as_string()->get());
        else if (auto a = n->as_array())
            for (std::size_t i = 0; i < a->size(); ++i)
                files.emplace_back(&(*a)[i],
                                   want_string((*a)[i], key + ".env_file[" + std::to_string(i) + "]"));
        else
            wrong_type(*n, key + ".env_file", "a file name or an array of them");
        for (const auto& [at, f] : files) {
            try {
                for (auto& [k, v] : read_env_file(resolve(f))) s.command.env(k, v);
            } catch (const env_file_error& e) {
                fail(*at, key + ".env_file", env_file_message(e));
            }
        }
    }
    if (auto n = t.get("env")) {
        for (auto [k, v] : in_file_order(want_table(*n, key + ".env"))) {
            std::string kk = key + ".env." + std::string(k->str());
            if (std::string(k->str()).empty() || std::string(k->str()).find('=') != std::string::npos ||
                std::string(k->str()).find('\0') != std::string::npos)
                fail(k->source(), kk, "a variable name cannot be empty or contain '=' or NUL");
            std::string value;
            if (v->is_string())
                value = expand(v->as_string()->get(), *v, kk);
            else if (auto i = v->as_integer())
                value = std::to_string(i->get());
            else
                wrong_type(*v, kk, "a string");
            if (value.find('\0') != std::string::npos) fail(*v, kk, "a value cannot contain NUL");
            s.command.env(std::string(k->str()), std::move(value));
        }
    }
    if (auto n = t.get("user")) {
        std::string u = want_string(*n, key + ".user");
        if (!is_number(u) && !user_exists(u))
            fail(*n, key + ".user", "no user '" + escape(u) + "' on this system" + note_of_names());
        s.command.user(u);
    }
    if (auto n = t.get("group")) {
        std::string g = want_string(*n, key + ".group");
        if (!is_number(g) && !group_exists(g))
            fail(*n, key + ".group", "no group '" + escape(g) + "' on this system" + note_of_names());
        s.command.group(g);
    }
    if (auto n = t.get("umask")) {
        std::optional<unsigned> m;
        if (auto i = n->as_integer()) {
            if (i->get() >= 0 && i->get() <= 0777) m = static_cast<unsigned>(i->get());
        } else {
            m = cli::parse_umask(want_string(*n, key + ".umask"));
        }
        if (!m) fail(*n, key + ".umask", "expected an octal mask up to 0777, like \"022\"");
        s.command.umask(static_cast<mode_t>(*m));
    }
    if (auto n = t.get("restart")) {
        std::string r = pick(*n, key + ".restart", restart_values);
        s.restart = r == "no"       ? restart_policy::no
                    : r == "always" ? restart_policy::always
                                    : restart_policy::on_failure;
    }
    if (auto n = t.get("success_codes")) {
        const auto& a = want_array(*n, key + ".success_codes");
        s.success_codes.clear();
        for (std::size_t i = 0; i < a.size(); ++i)
            s.success_codes.push_back(
                static_cast<int>(want_int(a[i], key + ".success_codes[" + std::to_string(i) + "]", 0, 255)));
        where_[key + ".success_codes"] = n->source();
    }
    if (auto n = t.get("backoff")) {
        std::string k = key + ".backoff";
        const auto& b = want_table(*n, k);
        check_keys(b, k, backoff_keys);
        where_[k] = n->source();
        if (auto v = b.get("initial"))
            s.backoff.initial = duration(*v, k + ".initial"), where_[k + ".initial"] = v->source();
        if (auto v = b.get("max")) s.backoff.max = duration(*v, k + ".max"), where_[k + ".max"] = v->source();
        if (auto v = b.get("jitter")) {
            if (auto f = v->as_floating_point())
                s.backoff.jitter = f->get();
            else if (auto i = v->as_integer())
                s.backoff.jitter = static_cast<double>(i->get());
            else
                wrong_type(*v, k + ".jitter", "a number (0.2 is ±20 %)");
            where_[k + ".jitter"] = v->source();
        }
        if (auto v = b.get("reset_after")) s.backoff.reset_after = duration(*v, k + ".reset_after");
    }
    if (auto n = t.get("start_limit")) {
        std::string k = key + ".start_limit";
        const auto& b = want_table(*n, k);
        check_keys(b, k, start_limit_keys);
        if (auto v = b.get("burst"))
            s.start_limit.burst = static_cast<unsigned>(want_int(*v, k + ".burst", 0, 1000000));
        if (auto v = b.get("interval")) {
            s.start_limit.interval = duration(*v, k + ".interval");
            where_[k + ".interval"] = v->source();
        }
        if (auto v = b.get("keep_retrying"))
            s.start_limit.keep_retrying = want_bool(*v, k + ".keep_retrying");
    }
    if (auto n = t.get("stop")) {
        std::string k = key + ".stop";
        const auto& b = want_table(*n, k);
        check_keys(b, k, stop_keys);
        if (auto v = b.get("signal")) {
            std::optional<int> sig;
            std::string text;
            if (auto i = v->as_integer()) {
                text = std::to_string(i->get());
                if (i->get() > 0 && i->get() <= SIGRTMAX) sig = static_cast<int>(i->get());
            } else {
                text = want_string(*v, k + ".signal");
                sig = cli::parse_signal(text);
            }
            if (!sig) {
                std::string bare = text;
                for (auto& c : bare) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
                if (bare.rfind("SIG", 0) == 0) bare.erase(0, 3);
                std::string msg = "unknown signal \"" + escape(text) + "\"";
                if (auto near = nearest(bare, signal_names())) msg += " (did you mean \"" + *near + "\"?)";
                fail(*v, k + ".signal", msg);
            }
            s.command.stop_signal(*sig);
        }
        if (auto v = b.get("grace")) s.command.stop_grace(duration(*v, k + ".grace"));
    }
    if (auto n = t.get("depends_on")) {
        where_[key + ".depends_on"] = n->source();
        read_depends_on(*n, key + ".depends_on", s);
    }
    if (auto n = t.get("ready")) s.ready = read_ready(want_table(*n, key + ".ready"), key + ".ready", cwd);
    if (auto n = t.get("health"))
        s.health = read_health(want_table(*n, key + ".health"), key + ".health", cwd);
    if (auto n = t.get("watchdog")) {
        s.watchdog = duration(*n, key + ".watchdog");
        if (s.ready.type != readiness::kind::notify)
            fail(*n, key + ".watchdog",
                 "needs ready = { notify = true } (the service sends WATCHDOG=1 on the notify socket)");
        where_[key + ".watchdog"] = n->source();
    }
    if (auto n = t.get("log")) {
        std::string k = key + ".log";
        const auto& b = want_table(*n, k);
        check_keys(b, k, log_keys);
        auto f = b.get("file");
        if (!f) fail(*n, k, "needs file = \"path\"");
        std::string path = expand(want_string(*f, k + ".file"), *f, k + ".file");
        if (path.empty()) fail(*f, k + ".file", "is empty");
        log_file_spec spec;
        spec.path = resolve(path).string();
        if (auto v = b.get("max_size")) {
            spec.max_size = size(*v, k + ".max_size");
        }
        if (auto v = b.get("keep")) spec.keep = static_cast<unsigned>(want_int(*v, k + ".keep", 0, 1000));
        opts.log_file = std::move(spec);
    }
    if (auto n = t.get("output")) {
        std::string k = key + ".output";
        const auto& b = want_table(*n, k);
        check_keys(b, k, output_keys);
        if (auto v = b.get("keep_lines"))
            s.output.keep_lines = static_cast<std::size_t>(want_int(*v, k + ".keep_lines", 0, 10000000));
        if (auto v = b.get("max_line"))
            s.output.max_line = size(*v, k + ".max_line"), where_[k + ".max_line"] = v->source();
    }
    opts.exit_on_failure = global_eof;
    if (auto n = t.get("exit_on_failure")) opts.exit_on_failure = want_bool(*n, key + ".exit_on_failure");
    return s;
}

config toml_reader::read(const toml::table& root) {
    check_keys(root, "", top_keys);
    config cfg;
    if (auto n = root.get("drover")) {
        const auto& d = want_table(*n, "drover");
        check_keys(d, "drover", drover_keys);
        if (auto v = d.get("exit_on_failure")) cfg.exit_on_failure = want_bool(*v, "drover.exit_on_failure");
        if (auto v = d.get("shutdown_grace"))
            cfg.shutdown_grace =
                std::chrono::duration_cast<std::chrono::nanoseconds>(duration(*v, "drover.shutdown_grace"));
    }
    auto svc_n = root.get("service");
    if (!svc_n) throw config_error(file_, 0, 0, "", "no services: add a [service.NAME] table with a command");
    const auto& svcs = want_table(*svc_n, "service");
    if (svcs.empty()) fail(*svc_n, "service", "no services: add a [service.NAME] table with a command");
    for (auto [k, n] : in_file_order(svcs)) {
        const auto& t = want_table(*n, "service." + std::string(k->str()));
        const std::string name(k->str());
        bool name_ok =
            !name.empty() && name.size() <= 128 && std::all_of(name.begin(), name.end(), [](char c) {
                return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
            });
        if (!name_ok)
            fail(k->source(), "service." + name,
                 "a service name is 1 to 128 letters, digits, '-', '_' and '.', not \"" + escape(name) +
                     "\"");
        cfg.services.push_back(
            read_service(std::string(k->str()), t, cfg.options[std::string(k->str())], cfg.exit_on_failure));
    }
    std::vector<std::string> names;
    for (const auto& s : cfg.services) names.push_back(s.name);
    for (const auto& d : dep_sites_) {
        if (std::find(names.begin(), names.end(), d.name) != names.end()) continue;
        fail(d.at, d.key, "unknown service '" + escape(d.name) + "'" + did_you_mean(d.name, names));
    }

    if (auto g_n = root.get("group")) {
        for (auto [k, n] : in_file_order(want_table(*g_n, "group"))) {
            std::string key = "group." + std::string(k->str());
            const auto& t = want_table(*n, key);
            check_keys(t, key, group_keys);
            where_[key] = t.source();
            service_group g;
            g.name = std::string(k->str());
            auto members = t.get("services");
            if (!members) fail(t, key, "needs services = [\"name\", ...]");
            const auto& a = want_array(*members, key + ".services");
            for (std::size_t i = 0; i < a.size(); ++i) {
                std::string ki = key + ".services[" + std::to_string(i) + "]";
                std::string m = want_string(a[i], ki);
                if (std::find(names.begin(), names.end(), m) == names.end())
                    fail(a[i], ki, "unknown service '" + escape(m) + "'" + did_you_mean(m, names));
                where_[key + "/" + m] = a[i].source();
                g.services.push_back(std::move(m));
            }
            if (auto v = t.get("strategy")) {
                std::string st = pick(*v, key + ".strategy", strategy_values);
                g.strategy = static_cast<restart_strategy>(
                    std::find(strategy_values.begin(), strategy_values.end(), st) - strategy_values.begin());
            }
            cfg.groups.push_back(std::move(g));
        }
    }

    // Everything else the supervisor refuses (names, ranges, cycles, regexes, probe addresses),
    // reported at the key it is about.
    try {
        supervisor::validate(cfg.services, cfg.groups);
    } catch (const service_error& e) {
        std::string prefix =
            (e.service().empty() ? "" : "service '" + e.service() + "': ") + e.field() + ": ";
        std::string msg = e.what();
        if (msg.rfind(prefix, 0) == 0) msg.erase(0, prefix.size());
        std::string key;
        toml::source_region at;
        if (e.field().rfind("group ", 0) == 0) {
            std::string g = e.field().substr(6);
            key = "group." + g;
            if (auto it = where_.find(key + "/" + e.service()); it != where_.end())
                at = it->second, key += ".services";
            else if (auto it2 = where_.find(key); it2 != where_.end())
                at = it2->second;
        } else {
            key = "service." + e.service() + "." + e.field();
            std::string k = key;
            for (;;) {
                if (auto it = where_.find(k); it != where_.end()) {
                    at = it->second;
                    break;
                }
                auto dot = k.rfind('.');
                if (dot == std::string::npos || dot <= std::string("service.").size() + e.service().size()) {
                    if (auto it2 = where_.find("service." + e.service()); it2 != where_.end())
                        at = it2->second;
                    break;
                }
                k.resize(dot);
            }
        }
        fail(at, key, msg);
    }
    return cfg;
}

// ---------------------------------------------------------------------------------------------
// Procfile

bool procfile_name_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
}

config read_procfile(const std::string& file, const std::string& text, const fs::path& dir) {
    config cfg;
    cfg.kind = config::format::procfile;
    std::vector<std::pair<std::string, std::string>> dotenv;
    bool env_port = false;
    fs::path env_path = dir / ".env";
    std::error_code ec;
    if (fs::exists(env_path, ec)) {
        try {
            dotenv = read_env_file(env_path);
        } catch (const env_file_error& e) {
            std::string msg = e.what();
            std::string prefix = e.file() + (e.line() ? ":" + std::to_string(e.line()) : "") + ": ";
            if (msg.rfind(prefix, 0) == 0) msg.erase(0, prefix.size());
            throw config_error(env_path.string(), static_cast<int>(e.line()), 0, "", msg);
        }
        for (const auto& [k, v] : dotenv) env_port = env_port || k == "PORT";
    }
    std::istringstream in(text);
    std::string line;
    int number = 0;
    auto bad = [&](int column, const std::string& key, const std::string& msg) {
        throw config_error(file, number, column, key, msg);
    };
    while (std::getline(in, line)) {
        ++number;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        std::size_t start = line.find_first_not_of(" \t");
        if (start == std::string::npos || line[start] == '#') continue;
        std::size_t colon = line.find(':', start);
        if (colon == std::string::npos) bad(static_cast<int>(start) + 1, "", "expected 'name: command'");
        std::string name = line.substr(start, colon - start);
        if (name.empty()) bad(static_cast<int>(start) + 1, "", "a process type needs a name before ':'");
        for (std::size_t i = 0; i < name.size(); ++i)
            if (!procfile_name_char(name[i]))
                bad(static_cast<int>(start + i) + 1, "",
                    "'" + escape(name) +
                        "' is not a process type name (letters, digits, '-' and '_'), or the "
                        "line is not 'name: command'");
        std::size_t cmd = line.find_first_not_of(" \t", colon + 1);
        if (cmd == std::string::npos) bad(static_cast<int>(colon) + 2, name, "no command after ':'");
        for (const auto& s : cfg.services)
            if (s.name == name) bad(static_cast<int>(start) + 1, name, "defined twice");
        service s(name, drover::command::shell(line.substr(cmd)));
        s.command.cwd(dir);
        for (const auto& [k, v] : dotenv) s.command.env(k, v);
        // foreman's convention: each process type gets its own port, 100 apart.
        if (!env_port) s.command.env("PORT", std::to_string(5000 + 100 * cfg.services.size()));
        s.restart = restart_policy::on_failure;
        cfg.options[name] = {};
        cfg.services.push_back(std::move(s));
    }
    if (cfg.services.empty())
        throw config_error(file, 0, 0, "", "no process types: add lines like 'web: ./server'");
    try {
        supervisor::validate(cfg.services, cfg.groups);
    } catch (const service_error& e) {
        throw config_error(file, 0, 0, "", e.what());
    }
    return cfg;
}

// ---------------------------------------------------------------------------------------------
// describe_plan

std::string quoted(const std::string& s) {
    std::string e = escape(s), out = "\"";
    for (char c : e) {
        if (c == '"') out += '\\';
        out += c;
    }
    return out + "\"";
}

std::string argv_text(const drover::command& c) {
    std::string s = "[" + quoted(c.program());
    for (const auto& a : c.args()) s += ", " + quoted(a);
    return s + "]";
}

std::string dur(clk::duration d) {
    return cli::format_duration(std::chrono::duration_cast<std::chrono::nanoseconds>(d));
}

std::string probe_text(const probe& p) {
    switch (p.type) {
    case probe::kind::tcp:
        return "a TCP connect to " + escape(p.address);
    case probe::kind::http:
        return "an HTTP GET of " + escape(p.address) + " answering 2xx";
    case probe::kind::exec:
        return p.program ? argv_text(*p.program) + " exiting 0" : "a command exiting 0";
    }
    return "?";
}

std::string size_text(std::size_t n) {
    if (n && n % (1024 * 1024 * 1024) == 0) return std::to_string(n >> 30) + "GiB";
    if (n && n % (1024 * 1024) == 0) return std::to_string(n >> 20) + "MiB";
    if (n && n % 1024 == 0) return std::to_string(n >> 10) + "KiB";
    return std::to_string(n) + " bytes";
}

std::string signal_text(int sig) {
    const char* name = sigabbrev_np(sig);
    return name ? "SIG"s + name : "signal " + std::to_string(sig);
}

} // namespace

config_error::config_error(std::string f, int l, int c, std::string k, std::string m)
    : std::runtime_error(format_error(f, l, c, k, m)), file(std::move(f)), key(std::move(k)),
      message(std::move(m)), line(l), column(c) {}

config load_config(const std::string& path, getenv_fn getenv) {
    if (!getenv)
        getenv = [](const std::string& name) -> std::optional<std::string> {
            if (const char* v = ::getenv(name.c_str())) return std::string(v);
            return std::nullopt;
        };
    std::ifstream in(path, std::ios::binary);
    if (!in) throw config_error(path, 0, 0, "", "cannot read: "s + strerror(errno));
    std::ostringstream buf;
    buf << in.rdbuf();
    if (in.bad()) throw config_error(path, 0, 0, "", "cannot read: "s + strerror(errno));
    std::string text = buf.str();
    std::error_code ec;
    fs::path abs = fs::absolute(path, ec);
    fs::path dir = ec ? fs::path(path).parent_path() : abs.parent_path();

    config cfg;
    if (fs::path(path).filename().string().rfind("Procfile", 0) == 0) {
        cfg = read_procfile(path, text, dir);
    } else {
        toml::table root;
        try {
            root = toml::parse(text, path);
        } catch (const toml::parse_error& e) {
            std::string msg(e.description());
            // toml++'s words for the most common slip, a string without quotes.
            if (msg.find("could not determine value type") != std::string::npos)
                msg += " (is it a string without quotes?)";
            throw config_error(path, static_cast<int>(e.source().begin.line),
                               static_cast<int>(e.source().begin.column), "", msg);
        }
        cfg = toml_reader(path, dir, std::move(getenv)).read(root);
    }
    cfg.path = path;
    return cfg;
}

std::string find_config(const std::string& dir) {
    std::error_code ec;
    for (const char* name : {"drover.toml", "Procfile"}) {
        fs::path p = fs::path(dir) / name;
        if (fs::is_regular_file(p, ec)) return p.string();
    }
    return {};
}

std::string describe_plan(const config& cfg) {
    // Start order: file order, each service after everything it depends on (the config is
    // validated, so there is no cycle).
    std::vector<const service*> order;
    std::set<std::string> placed;
    while (order.size() < cfg.services.size()) {
        bool progress = false;
        for (const auto& s : cfg.services) {
            if (placed.count(s.name)) continue;
            bool ready = std::all_of(s.depends_on.begin(), s.depends_on.end(),
                                     [&](const dependency& d) { return placed.count(d.service) > 0; });
            if (!ready) continue;
            order.push_back(&s);
            placed.insert(s.name);
            progress = true;
            break;
        }
        if (!progress) break;
    }
    std::ostringstream o;
    o << escape(cfg.path) << ": " << cfg.services.size()
      << (cfg.services.size() == 1 ? " service" : " services")
      << (cfg.kind == config::format::procfile ? " (Procfile)" : "") << "\nstart order:";
    for (std::size_t i = 0; i < order.size(); ++i) o << (i ? ", " : " ") << order[i]->name;
    o << "\n";
    static const char* conditions[] = {"started", "ready", "healthy", "completed", "completed_successfully"};
    for (const service* s : order) {
        const auto& c = s->command;
        o << "\n" << s->name << "\n";
        o << "  command:   " << argv_text(c) << "\n";
        if (c.cwd()) o << "  cwd:       " << escape(c.cwd()->string()) << "\n";
        if (!c.env_ops().empty()) {
            std::set<std::string> keys;
            for (const auto& op : c.env_ops()) keys.insert(op.key);
            o << "  env:      ";
            for (const auto& k : keys) o << " " << escape(k);
            o << "\n";
        }
        if (c.user()) o << "  user:      " << escape(*c.user()) << "\n";
        if (c.group()) o << "  group:     " << escape(*c.group()) << "\n";
        o << "  waits for: ";
        if (s->depends_on.empty()) o << "nothing";
        for (std::size_t i = 0; i < s->depends_on.size(); ++i) {
            const auto& d = s->depends_on[i];
            o << (i ? ", " : "") << d.service << " (" << conditions[static_cast<int>(d.condition)]
              << (d.restart_with ? ", restarts with it)" : ")");
        }
        o << "\n  ready:     ";
        const auto& r = s->ready;
        switch (r.type) {
        case readiness::kind::none:
            o << "when spawned";
            break;
        case readiness::kind::notify:
            o << "on READY=1 from sd_notify";
            break;
        case readiness::kind::fd:
            o << "on a line written to descriptor " << r.fd_number;
            break;
        case readiness::kind::log:
            o << "on an output line matching " << quoted(r.pattern);
            break;
        case readiness::kind::check:
            o << "when " << probe_text(r.check) << " passes (every " << dur(r.interval) << ")";
            break;
        }
        if (r.type != readiness::kind::none) o << ", within " << dur(r.timeout);
        o << "\n";
        if (s->health)
            o << "  health:    " << probe_text(s->health->check) << ", every " << dur(s->health->interval)
              << " after " << dur(s->health->initial_delay) << "; unhealthy after " << s->health->failures
              << " failures in a row\n";
        if (s->watchdog) o << "  watchdog:  WATCHDOG=1 at least every " << dur(*s->watchdog) << "\n";
        o << "  restart:   "
          << (s->restart == restart_policy::no       ? "no"
              : s->restart == restart_policy::always ? "always"
                                                     : "on-failure");
        if (s->restart != restart_policy::no) {
            o << " (backoff " << dur(s->backoff.initial) << " doubling to " << dur(s->backoff.max)
              << ", jitter " << s->backoff.jitter << ", reset after " << dur(s->backoff.reset_after) << "; ";
            if (s->start_limit.burst == 0)
                o << "no start limit)";
            else
                o << "at most " << s->start_limit.burst << " starts in " << dur(s->start_limit.interval)
                  << (s->start_limit.keep_retrying ? ", then keeps retrying)" : ", then failed)");
        }
        if (s->success_codes != std::vector<int>{0}) {
            o << "; success codes";
            for (int code : s->success_codes) o << " " << code;
        }
        o << "\n  stop:      " << signal_text(c.stop_signal()) << ", SIGKILL after " << dur(c.stop_grace())
          << "\n";
        if (auto it = cfg.options.find(s->name); it != cfg.options.end()) {
            if (const auto& lf = it->second.log_file) {
                o << "  log file:  " << escape(lf->path);
                if (lf->max_size == 0)
                    o << " (never rotated)\n";
                else
                    o << " (rotated at " << size_text(lf->max_size) << ", " << lf->keep << " kept)\n";
            }
            if (it->second.exit_on_failure) o << "  on failure: drover up stops everything and exits\n";
        }
    }
    if (!cfg.groups.empty()) o << "\ngroups\n";
    for (const auto& g : cfg.groups) {
        o << "  " << g.name << " ("
          << (g.strategy == restart_strategy::one_for_all    ? "one_for_all"
              : g.strategy == restart_strategy::rest_for_one ? "rest_for_one"
                                                             : "one_for_one")
          << "):";
        for (const auto& m : g.services) o << " " << m;
        o << "\n";
    }
    if (cfg.kind == config::format::toml)
        o << "\nshutdown grace: " << cli::format_duration(cfg.shutdown_grace) << "\n";
    return o.str();
}

} // namespace drover::up
