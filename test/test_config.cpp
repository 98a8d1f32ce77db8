// `drover up`'s configuration reader (tools/drover/config.cpp): drover.toml and Procfiles into
// service specs, and every kind of mistake reported at its file, line and column.
#include "../tools/drover/config.hpp"

#include <doctest/doctest.h>

#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using drover::up::config;
using drover::up::config_error;
using drover::up::load_config;

namespace {

// A fresh directory under /tmp, removed with everything in it at the end of the test.
struct temp_dir {
    fs::path path;
    temp_dir() {
        char tmpl[] = "/tmp/drover-config-XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string write(const std::string& name, const std::string& text) const {
        std::ofstream(path / name, std::ios::binary) << text;
        return (path / name).string();
    }
};

using env_map = std::map<std::string, std::string>;

auto lookup(env_map vars) {
    return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
        if (auto it = vars.find(name); it != vars.end()) return it->second;
        return std::nullopt;
    };
}

// The what() of the error `text` gives as drover.toml (empty when it loads).
std::string error_of(const std::string& text, env_map vars = {}) {
    temp_dir dir;
    std::string file = dir.write("drover.toml", text);
    try {
        load_config(file, lookup(std::move(vars)));
    } catch (const config_error& e) {
        std::string what = e.what();
        // The directory's name differs per run: show the file relative to it.
        if (what.rfind(dir.path.string() + "/", 0) == 0) what.erase(0, dir.path.string().size() + 1);
        return what;
    }
    return {};
}

const char* const valid_db = "[service.db]\nshell = \"true\"\n";

} // namespace

TEST_SUITE("config") {

    TEST_CASE("a full drover.toml becomes the services, groups and options it describes") {
        temp_dir dir;
        dir.write("common.env", "SHARED=1\nLEVEL=debug\n");
        std::string file = dir.write("drover.toml", R"([drover]
exit_on_failure = true
shutdown_grace = "20s"

[service.db]
command = ["postgres", "-D", "${PGDATA:-/var/lib/pg}"]
ready = { log = "ready to accept connections", timeout = "30s" }
stop = { signal = "INT", grace = "5s" }
restart = "always"
exit_on_failure = false

[service.api]
shell = "exec ./api --port 8080"
cwd = "api"
env_file = "common.env"
env = { LEVEL = "info", PORT = 8080 }
umask = "027"
depends_on = { db = { condition = "healthy", restart_with = true } }
ready = { http = "http://127.0.0.1:8080/ready", interval = "250ms", timeout = "10s" }
health = { exec = ["./check", "--quick"], interval = "5s", timeout = "2s", initial_delay = "1s", failures = 2 }
restart = "on-failure"
success_codes = [0, 3]
backoff = { initial = "200ms", max = "1m", jitter = 0.1, reset_after = "2m" }
start_limit = { burst = 3, interval = "30s", keep_retrying = true }
output = { keep_lines = 50, max_line = "4KiB" }

[service.worker]
command = ["worker"]
depends_on = ["db"]
ready = { notify = true }
watchdog = "30s"
log = { file = "logs/worker.log", max_size = "1MiB", keep = 2 }

[group.backend]
services = ["api", "worker"]
strategy = "rest_for_one"
)");
        config cfg = load_config(file, lookup({}));
        CHECK(cfg.path == file);
        CHECK(cfg.kind == config::format::toml);
        CHECK(cfg.exit_on_failure);
        CHECK(cfg.shutdown_grace == 20s);
        REQUIRE(cfg.services.size() == 3);
        CHECK(cfg.services[0].name == "db"); // file order, not toml++'s sorted order
        CHECK(cfg.services[1].name == "api");
        CHECK(cfg.services[2].name == "worker");

        drover::service db("db", drover::command("postgres", {"-D", "/var/lib/pg"}));
        db.command.cwd(dir.path).stop_signal(SIGINT).stop_grace(5s);
        db.ready = drover::readiness::log("ready to accept connections");
        db.ready.timeout = 30s;
        db.restart = drover::restart_policy::always;
        CHECK(cfg.services[0] == db);

        drover::service api("api", drover::command::shell("exec ./api --port 8080"));
        api.command.cwd(dir.path / "api").env("SHARED", "1").env("LEVEL", "debug").env("LEVEL", "info");
        api.command.env("PORT", "8080").umask(027);
        api.depends_on = {{"db", drover::dependency_condition::healthy, true}};
        api.ready = drover::readiness::http("http://127.0.0.1:8080/ready");
        api.ready.interval = 250ms;
        api.ready.timeout = 10s;
        drover::command check("./check", {"--quick"});
        check.cwd(dir.path / "api").stop_grace(1s);
        api.health = drover::health_check{drover::probe::exec(check), 5s, 1s, 2};
        api.health->check.timeout = 2s;
        api.restart = drover::restart_policy::on_failure;
        api.success_codes = {0, 3};
        api.backoff = {200ms, 1min, 0.1, 2min};
        api.start_limit = {3, 30s, true};
        api.output.keep_lines = 50;
        api.output.max_line = 4096;
        CHECK(cfg.services[1] == api);

        drover::service worker("worker", drover::command("worker"));
        worker.command.cwd(dir.path);
        worker.depends_on = {{"db", drover::dependency_condition::ready, false}};
        worker.ready = drover::readiness::notify();
        worker.watchdog = 30s;
        CHECK(cfg.services[2] == worker);

        REQUIRE(cfg.groups.size() == 1);
        CHECK(cfg.groups[0] ==
              drover::service_group{"backend", {"api", "worker"}, drover::restart_strategy::rest_for_one});

        REQUIRE(cfg.options.size() == 3);
        CHECK_FALSE(cfg.options["db"].exit_on_failure); // its own setting wins over [drover]'s
        CHECK(cfg.options["api"].exit_on_failure);
        CHECK_FALSE(cfg.options["api"].log_file);
        REQUIRE(cfg.options["worker"].log_file);
        CHECK(*cfg.options["worker"].log_file ==
              drover::up::log_file_spec{(dir.path / "logs/worker.log").string(), 1024 * 1024, 2});
    }

    TEST_CASE("a misspelt key is reported where it is, with the nearest valid key") {
        CHECK(error_of("[service.web]\ncommand = [\"web\"]\ndepend_on = [\"db\"]\n") ==
              "drover.toml:3:1: service.web.depend_on: unknown key 'depend_on' (did you mean 'depends_on'?)");
        CHECK(error_of("[servce.web]\ncommand = [\"web\"]\n") ==
              "drover.toml:1:2: servce: unknown key 'servce' (did you mean 'service'?)");
        CHECK(error_of("[service.web]\ncommand = [\"web\"]\nready = { tpc = \"localhost:80\" }\n") ==
              "drover.toml:3:11: service.web.ready.tpc: unknown key 'tpc' (did you mean 'tcp'?)");
        // Nothing near: the valid keys are listed instead.
        CHECK(error_of("[service.web]\ncommand = [\"web\"]\nstop = { zzzzzz = 1 }\n") ==
              "drover.toml:3:10: service.web.stop.zzzzzz: unknown key 'zzzzzz'; the keys are: signal, grace");
    }

    TEST_CASE("a misspelt value is reported with the nearest valid value") {
        CHECK(error_of("[service.web]\ncommand = [\"web\"]\nrestart = \"on-falure\"\n") ==
              "drover.toml:3:11: service.web.restart: unknown value \"on-falure\" (did you mean "
              "\"on-failure\"?)");
        CHECK(error_of(std::string(valid_db) + "[service.web]\ncommand = [\"web\"]\n"
                                               "depends_on = { db = \"completed-successfully\" }\n") ==
              "drover.toml:5:21: service.web.depends_on.db: unknown value \"completed-successfully\" "
              "(did you mean \"completed_successfully\"?)");
        CHECK(error_of("[service.web]\ncommand = [\"web\"]\nstop = { signal = \"TREM\" }\n") ==
              "drover.toml:3:19: service.web.stop.signal: unknown signal \"TREM\" (did you mean \"TERM\"?)");
        CHECK(error_of("[service.web]\ncommand = [\"web\"]\n[group.g]\nservices = [\"web\"]\nstrategy = "
                       "\"one_for_al\"\n") == "drover.toml:5:12: group.g.strategy: unknown value "
                                              "\"one_for_al\" (did you mean \"one_for_all\"?)");
    }

    TEST_CASE("a value of the wrong type names the type expected and the type found") {
        CHECK(error_of("[service.web]\ncommand = [\"web\"]\nrestart = 3\n") ==
              "drover.toml:3:11: service.web.restart: expected a string, found an integer");
        CHECK(error_of("[service.web]\ncommand = \"web --port 80\"\n") ==
              "drover.toml:2:11: service.web.command: expected an array, found a string");
        CHECK(error_of("[service.web]\ncommand = [\"web\", 80]\n") ==
              "drover.toml:2:19: service.web.command[1]: expected a string, found an integer");
    }

    TEST_CASE("a bad duration or size says what is wrong with it") {
        CHECK(error_of("[service.web]\ncommand = [\"web\"]\nstop = { grace = \"5x\" }\n") ==
              "drover.toml:3:18: service.web.stop.grace: duration \"5x\" has an unknown unit 'x'");
        CHECK(error_of("[service.web]\ncommand = [\"web\"]\nstop = { grace = 5 }\n") ==
              "drover.toml:3:18: service.web.stop.grace: durations are strings with a unit, like \"10s\" "
              "(found a number)");
        CHECK(error_of("[service.web]\ncommand = [\"web\"]\noutput = { max_line = \"4XB\" }\n") ==
              "drover.toml:3:23: service.web.output.max_line: \"4XB\" is not a size (a number of bytes, "
              "optionally "
              "with K, M or G: \"16KiB\", \"10MiB\")");
    }

    TEST_CASE("an unknown dependency or group member suggests the nearest service") {
        CHECK(error_of(std::string(valid_db) +
                       "[service.web]\ncommand = [\"web\"]\ndepends_on = [\"dbb\"]\n") ==
              "drover.toml:5:15: service.web.depends_on[0]: unknown service 'dbb' (did you mean 'db'?)");
        CHECK(error_of(std::string(valid_db) +
                       "[service.web]\ncommand = [\"web\"]\ndepends_on = { dbx = \"started\" }\n") ==
              "drover.toml:5:16: service.web.depends_on.dbx: unknown service 'dbx' (did you mean 'db'?)");
        CHECK(error_of(std::string(valid_db) + "[group.g]\nservices = [\"db\", \"bd\"]\n") ==
              "drover.toml:4:19: group.g.services[1]: unknown service 'bd' (did you mean 'db'?)");
    }

    TEST_CASE("a dependency cycle is named in order at the depends_on that starts it") {
        CHECK(error_of("[service.a]\ncommand = [\"a\"]\ndepends_on = [\"b\"]\n"
                       "[service.b]\ncommand = [\"b\"]\ndepends_on = [\"c\"]\n"
                       "[service.c]\ncommand = [\"c\"]\ndepends_on = [\"a\"]\n") ==
              "drover.toml:3:14: service.a.depends_on: dependency cycle: a -> b -> c -> a");
    }

    TEST_CASE("the supervisor's own checks point at the key they are about") {
        CHECK(error_of("[service.web]\ncommand = [\"web\"]\nwatchdog = \"30s\"\n") ==
              "drover.toml:3:12: service.web.watchdog: needs ready = { notify = true } (the service sends "
              "WATCHDOG=1 on the notify socket)");
        CHECK(
            error_of("[service.web]\ncommand = [\"web\"]\nbackoff = { initial = \"2s\", max = \"1s\" }\n") ==
            "drover.toml:3:35: service.web.backoff.max: is shorter than backoff.initial");
        CHECK(error_of("[service.web]\ncommand = [\"web\"]\nready = { tcp = \"localhost\" }\n") ==
              "drover.toml:3:17: service.web.ready: tcp probe address 'localhost': missing port");
        CHECK(error_of("[service.web]\ncommand = [\"web\"]\n[group.a]\nservices = [\"web\"]\n[group.b]\n"
                       "services = [\"web\"]\n") ==
              "drover.toml:6:13: group.b.services: already a member of group 'a'");
    }

    TEST_CASE("the other mistakes: syntax, missing command, both kinds, env files, users") {
        CHECK(error_of("[service.web]\ncommand = [\"web\"]\nrestart = on-failure\n") ==
              "drover.toml:3:11: Error while parsing value: could not determine value type (is it a string "
              "without quotes?)");
        CHECK(error_of("[service.web]\ncommand = [\"web\"\n") ==
              "drover.toml:2:18: Error while parsing array: encountered end-of-file");
        CHECK(
            error_of("[service.web]\ncwd = \"/\"\n") ==
            "drover.toml:1:1: service.web: has no command: set command = [\"prog\", \"arg\"] or shell = \"a "
            "shell line\"");
        CHECK(error_of("[service.\"a b\"]\ncommand = [\"x\"]\n") ==
              "drover.toml:1:10: service.a b: a service name is 1 to 128 letters, digits, '-', '_' and '.', "
              "not "
              "\"a b\"");
        CHECK(error_of("[service.web]\ncommand = [\"web\"]\nshell = \"web\"\n") ==
              "drover.toml:3:9: service.web.shell: set either command or shell, not both");
        CHECK(
            error_of("[service.web]\ncommand = []\n") ==
            "drover.toml:2:11: service.web.command: is empty: give the program and its arguments, [\"prog\", "
            "\"arg\"]");
        CHECK(error_of("[drover]\nexit_on_failure = true\n") ==
              "drover.toml: no services: add a [service.NAME] "
              "table with a command");
        CHECK(error_of("[service.web]\ncommand = [\"web\"]\nuser = \"no-such-user-here\"\n") ==
              "drover.toml:3:8: service.web.user: no user 'no-such-user-here' on this system");
        std::string e = error_of("[service.web]\ncommand = [\"web\"]\nenv_file = [\"missing.env\"]\n");
        CHECK(e.find("drover.toml:3:13: service.web.env_file: cannot read /tmp/drover-config-") == 0);
        CHECK(e.find("/missing.env: No such file or directory") != std::string::npos);

        temp_dir dir;
        dir.write("bad.env", "OK=1\nA B\n");
        std::string file =
            dir.write("drover.toml", "[service.web]\ncommand = [\"web\"]\nenv_file = \"bad.env\"\n");
        try {
            load_config(file);
            FAIL("no error");
        } catch (const config_error& err) {
            CHECK(err.line == 3);
            CHECK(err.column == 12);
            CHECK(err.key == "service.web.env_file");
            CHECK(err.message ==
                  "in " + (dir.path / "bad.env").string() + ":2: 'A' is followed by a space, not '='");
        }
        CHECK_THROWS_WITH_AS(load_config("/nonexistent/drover.toml"),
                             "/nonexistent/drover.toml: cannot read: No such file or directory",
                             config_error);
    }

    TEST_CASE("${VAR} and ${VAR:-default} expand in commands, addresses and paths; $$ is a '$'") {
        temp_dir dir;
        std::string file = dir.write("drover.toml", R"([service.web]
command = ["web", "--port=${PORT}", "${MODE:-dev}", "$$HOME", "$HOME", "${EMPTY:-fallback}"]
cwd = "${ROOT}/web"
env = { URL = "http://${HOST:-localhost}:${PORT}" }
ready = { tcp = "${HOST:-localhost}:${PORT}" }
log = { file = "${LOGS}/web.log" }
)");
        env_map vars{{"PORT", "8080"}, {"ROOT", "/srv"}, {"LOGS", "/var/log/app"}, {"EMPTY", ""}};
        config cfg = load_config(file, lookup(vars));
        const auto& c = cfg.services.at(0).command;
        CHECK(c.args() == std::vector<std::string>{"--port=8080", "dev", "$HOME", "$HOME", "fallback"});
        CHECK(c.cwd() == fs::path("/srv/web"));
        REQUIRE(c.env_ops().size() == 1);
        CHECK(c.env_ops()[0].value == "http://localhost:8080");
        CHECK(cfg.services[0].ready.check.address == "localhost:8080");
        CHECK(cfg.options["web"].log_file->path == "/var/log/app/web.log");

        // Unset without a default: the variable and the key are named.
        CHECK(
            error_of("[service.web]\ncommand = [\"web\", \"${PORT}\"]\n") ==
            "drover.toml:2:19: service.web.command[1]: environment variable PORT is not set (give a default: "
            "${PORT:-value})");
        CHECK(
            error_of("[service.web]\nshell = \"echo ${oops\"\n") ==
            "drover.toml:2:9: service.web.shell: '${' without a closing '}' (write '$$' for a literal '$')");
        // Elsewhere nothing is expanded.
        CHECK(error_of("[service.web]\ncommand = [\"web\"]\nuser = \"${NOPE}\"\n") ==
              "drover.toml:3:8: service.web.user: no user '${NOPE}' on this system");
    }

    TEST_CASE("a Procfile runs each line through sh, with the .env beside it and foreman's PORT") {
        temp_dir dir;
        std::string file = dir.write(
            "Procfile", "# the app\n\nweb: bundle exec puma -p $PORT\nworker:  ./work --queue=a\r\n");
        config cfg = load_config(file);
        CHECK(cfg.kind == config::format::procfile);
        REQUIRE(cfg.services.size() == 2);
        drover::service web("web", drover::command::shell("bundle exec puma -p $PORT"));
        web.command.cwd(dir.path).env("PORT", "5000");
        CHECK(cfg.services[0] == web);
        drover::service worker("worker", drover::command::shell("./work --queue=a"));
        worker.command.cwd(dir.path).env("PORT", "5100");
        CHECK(cfg.services[1] == worker);
        CHECK(cfg.services[1].restart == drover::restart_policy::on_failure);
        CHECK(cfg.options.size() == 2);

        dir.write(".env", "RACK_ENV=production\nPORT=9000\n");
        cfg = load_config(file);
        for (const auto& s : cfg.services) {
            REQUIRE(s.command.env_ops().size() == 2);
            CHECK(s.command.env_ops()[0] == drover::command::env_op{"RACK_ENV", "production"});
            CHECK(s.command.env_ops()[1] == drover::command::env_op{"PORT", "9000"}); // .env's PORT wins
        }

        std::string dev = dir.write("Procfile.dev", "web: ok\nbad name: x\n");
        try {
            load_config(dev);
            FAIL("no error");
        } catch (const config_error& e) {
            CHECK(std::string(e.what()) ==
                  dev + ":2:4: 'bad name' is not a process type name (letters, digits, "
                        "'-' and '_'), or the line is not 'name: command'");
        }
        dir.write("Procfile.x", "web: ok\njust words\n");
        CHECK_THROWS_WITH_AS(load_config((dir.path / "Procfile.x").string()),
                             ((dir.path / "Procfile.x").string() + ":2:1: expected 'name: command'").c_str(),
                             config_error);
        dir.write("Procfile.y", "web: ok\nweb: again\n");
        CHECK_THROWS_WITH_AS(load_config((dir.path / "Procfile.y").string()),
                             ((dir.path / "Procfile.y").string() + ":2:1: web: defined twice").c_str(),
                             config_error);
        dir.write(".env", "A B\n");
        CHECK_THROWS_WITH_AS(
            load_config(file),
            ((dir.path / ".env").string() + ":1: 'A' is followed by a space, not '='").c_str(), config_error);
    }

    TEST_CASE("find_config prefers drover.toml, then a Procfile") {
        temp_dir dir;
        CHECK(drover::up::find_config(dir.path.string()).empty());
        dir.write("Procfile", "web: ok\n");
        CHECK(drover::up::find_config(dir.path.string()) == (dir.path / "Procfile").string());
        dir.write("drover.toml", valid_db);
        CHECK(drover::up::find_config(dir.path.string()) == (dir.path / "drover.toml").string());
    }

    TEST_CASE("describe_plan lists dependencies first, then each service's command and policies") {
        temp_dir dir;
        std::string file = dir.write("drover.toml", R"([service.web]
command = ["./web", "a b", "tab\there"]
depends_on = ["api"]
log = { file = "web.log" }

[service.api]
command = ["./api"]
depends_on = { db = "healthy" }
restart = "no"

[service.db]
command = ["postgres"]
ready = { tcp = "127.0.0.1:5432" }
health = { tcp = "127.0.0.1:5432" }
stop = { signal = "INT" }
)");
        std::string plan = drover::up::describe_plan(load_config(file));
        INFO(plan);
        CHECK(plan.find("start order: db, api, web\n") != std::string::npos);
        CHECK(plan.find("\ndb\n") < plan.find("\napi\n"));
        CHECK(plan.find("\napi\n") < plan.find("\nweb\n"));
        CHECK(plan.find("command:   [\"./web\", \"a b\", \"tab\\there\"]") != std::string::npos);
        CHECK(plan.find("waits for: api (ready)") != std::string::npos);
        CHECK(plan.find("waits for: db (healthy)") != std::string::npos);
        CHECK(plan.find("ready:     when a TCP connect to 127.0.0.1:5432 passes (every 100ms), within 1m") !=
              std::string::npos);
        CHECK(plan.find("restart:   no\n") != std::string::npos);
        CHECK(plan.find("stop:      SIGINT, SIGKILL after 10s") != std::string::npos);
        CHECK(plan.find("log file:  " + (dir.path / "web.log").string() + " (rotated at 10MiB, 5 kept)") !=
              std::string::npos);
    }
}
