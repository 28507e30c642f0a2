// Configuration (DESIGN §10): the file and the command line, and what CAF alone would
// silently ignore becoming a clear start-up error.

#include <cstdio>
#include <fstream>

#include <unistd.h>

#include <doctest/doctest.h>

#include "app/config.hpp"

using er::app::config_error;
using er::app::load_config;

namespace {

struct temp_file {
  std::string path;
  explicit temp_file(const std::string& content) {
    char name[] = "/tmp/er-config-XXXXXX";
    int fd = mkstemp(name);
    REQUIRE(fd >= 0);
    close(fd);
    path = name;
    std::ofstream{path} << content;
  }
  ~temp_file() { std::remove(path.c_str()); }
};

std::string error_of(const std::vector<std::string>& args) {
  try {
    load_config(args);
  } catch (const config_error& e) {
    return e.what();
  }
  return {};
}

} // namespace

TEST_CASE("the shipped caf-application.conf loads and matches the embedded defaults") {
  auto cfg = load_config({"--config-file=" ER_SOURCE_DIR "/caf-application.conf"});
  er::app::router_settings defaults;
  CHECK(cfg.settings.port == defaults.port);
  CHECK(cfg.settings.host == defaults.host);
  CHECK(cfg.settings.max_message_bytes == defaults.max_message_bytes);
  CHECK(cfg.settings.max_connections == defaults.max_connections);
  CHECK(cfg.settings.max_http_connections == defaults.max_http_connections);
  CHECK(cfg.settings.demo_steps == defaults.demo_steps);
  CHECK(cfg.settings.demo_step_delay_ms == defaults.demo_step_delay_ms);
  CHECK(cfg.settings.heap_trim_interval_ms == defaults.heap_trim_interval_ms);
  CHECK(cfg.settings.heap_trim_threshold_bytes == defaults.heap_trim_threshold_bytes);
  CHECK_FALSE(cfg.settings.server_id.empty());
}

TEST_CASE("file values and command-line overrides are applied, the command line last") {
  temp_file f{"[router]\nport=9001\nserver-id=\"node-a\"\n[agents]\ndemo-steps=7\n"};
  auto cfg = load_config({"--config-file=" + f.path, "--router.port=9002"});
  CHECK(cfg.settings.port == 9002);
  CHECK(cfg.settings.server_id == "node-a");
  CHECK(cfg.settings.demo_steps == 7);
  CHECK(cfg.config_file == f.path);
}

TEST_CASE("a value of the wrong type in the file is an error naming the key") {
  temp_file f{"[router]\nport=\"eighty\"\n"};
  auto err = error_of({"--config-file=" + f.path});
  CHECK(err.find("router.port") != std::string::npos);
  CHECK(err.find("integer") != std::string::npos);
}

TEST_CASE("a value out of range is an error naming the key and the range") {
  temp_file f{"[router]\nmax-message-bytes=10\n"};
  auto err = error_of({"--config-file=" + f.path});
  CHECK(err.find("router.max-message-bytes") != std::string::npos);
  CHECK(err.find("out of range") != std::string::npos);
  CHECK(error_of({"--router.port=70000"}).find("out of range") != std::string::npos);
  CHECK(error_of({"--router.io-threads=65"}).find("router.io-threads") != std::string::npos);
}

TEST_CASE("a wrong type on the command line is an error") {
  CHECK(error_of({"--router.port=abc"}).find("expects an integer") != std::string::npos);
  CHECK(error_of({"--router.port"}).find("needs a value") != std::string::npos);
}

TEST_CASE("an unknown key in [router] is an error, a typo never passes silently") {
  temp_file f{"[router]\nprot=9000\n"};
  CHECK(error_of({"--config-file=" + f.path}).find("unknown option router.prot")
        != std::string::npos);
  CHECK(error_of({"--router.prot=1"}).find("unknown option") != std::string::npos);
}

TEST_CASE("a misspelled section or CAF option in the file is an error, as on the command line") {
  // CAF keeps a file's unknown sections and keys and ignores them: the router would run on
  // defaults nobody chose.
  temp_file section{"[rotuer]\nport=9000\n"};
  CHECK(error_of({"--config-file=" + section.path}).find("unknown section [rotuer]")
        != std::string::npos);
  temp_file caf_key{"[logger]\nverbosty=\"quiet\"\n"};
  CHECK(error_of({"--config-file=" + caf_key.path}).find("unknown option logger.verbosty")
        != std::string::npos);
  temp_file fine{"[logger]\nverbosity=\"quiet\"\n[scheduler]\nmax-throughput=50\n"
                 "[middleman]\nenable-automatic-connections=false\n[router]\nport=9000\n"
                 "[cluster]\nprefix=\"er\"\n[agents]\ndefault=\"demo\"\n"};
  CHECK(error_of({"--config-file=" + fine.path}) == "");
}

TEST_CASE("a default config file that is there but cannot be read is an error, not the defaults") {
  char dir[] = "/tmp/er-config-dir-XXXXXX";
  REQUIRE(mkdtemp(dir) != nullptr);
  std::string link = std::string{dir} + "/caf-application.conf";
  REQUIRE(symlink("/nonexistent/router.conf", link.c_str()) == 0); // dangling
  char here[4096];
  REQUIRE(getcwd(here, sizeof here) != nullptr);
  REQUIRE(chdir(dir) == 0);
  auto err = error_of({});
  REQUIRE(chdir(here) == 0);
  std::remove(link.c_str());
  rmdir(dir);
  CHECK(err.find("cannot read config file caf-application.conf") != std::string::npos);
}

TEST_CASE("a syntax error in the file is reported with the file name") {
  temp_file f{"[router]\nport=9000 # not an INI comment\n"};
  CHECK(error_of({"--config-file=" + f.path}).find(f.path) != std::string::npos);
}

TEST_CASE("a missing explicit config file is an error, a missing default one is not") {
  CHECK_FALSE(error_of({"--config-file=/nonexistent/router.conf"}).empty());
  CHECK(error_of({}).empty());
}

TEST_CASE("the development secrets are refused on a non-loopback host") {
  CHECK(error_of({"--router.host=0.0.0.0"}).find("jwt-secret") != std::string::npos);
  CHECK(error_of({"--router.host=0.0.0.0", "--router.jwt-secret=s3cret"}).find("api-key")
        != std::string::npos);
  CHECK(error_of({"--router.host=0.0.0.0", "--router.jwt-secret=s3cret", "--router.api-key=k"})
          .empty());
}

TEST_CASE("router.host must be an IP address: a name is refused at start, not when binding") {
  CHECK(error_of({"--router.host=localhost"}).find("router.host localhost is not an IP address")
        != std::string::npos);
  CHECK(error_of({"--router.host=::1"}).empty());
  CHECK(error_of({"--router.host=127.0.0.2"}).empty());
}

TEST_CASE("a command agent's timeout-ms is bounded like every timeout") {
  // 10^13 ms overflowed the run's deadline (nanoseconds on the steady clock): every run of
  // that agent timed out at once.
  temp_file f{"[agents.forever]\nexecutable=\"/bin/cat\"\ntimeout-ms=10000000000000\n"};
  CHECK(error_of({"--config-file=" + f.path}).find("timeout-ms = 10000000000000 is not an integer in [1, ")
        != std::string::npos);
  temp_file ok{"[agents.long]\nexecutable=\"/bin/cat\"\ntimeout-ms=86400000\n"};
  CHECK(error_of({"--config-file=" + ok.path}).empty());
}

TEST_CASE("CAF's own options pass through to CAF, after a type check") {
  auto cfg = load_config({"--scheduler.max-throughput=50", "--logger.verbosity=quiet"});
  CHECK(cfg.caf_args.size() == 2);
  CHECK(error_of({"--scheduler.max-throughput=many"}).find("scheduler.max-throughput")
        != std::string::npos);
}

TEST_CASE("CAF's scheduler threads and policy are refused: the io threads run the actors") {
  for (auto arg : {"--scheduler.max-threads=3", "--scheduler.policy=sharing"}) {
    auto err = error_of({arg});
    CHECK(err.find("router.io-threads") != std::string::npos);
  }
  temp_file f{"[scheduler]\nmax-threads=2\n"};
  CHECK(error_of({"--config-file=" + f.path}).find("scheduler.max-threads") != std::string::npos);
  CHECK(load_config({"--router.io-threads=0"}).settings.io_threads == 0);
  CHECK(effective_io_threads(load_config({}).settings) >= 1);
  CHECK(effective_io_threads(load_config({"--router.io-threads=3"}).settings) == 3);
}

TEST_CASE("an [agents.NAME] section with a url is an HTTP agent, its values checked by key") {
  temp_file good{"[agents.llm]\nurl=\"https://agents.example:8443/run?x=1\"\nbearer=\"b\"\n"
                 "timeout-ms=5000\nconnect-timeout-ms=700\nmax-in-flight=3\nqueue-timeout-ms=0\n"};
  auto cfg = load_config({"--config-file=" + good.path});
  REQUIRE(cfg.settings.http_agents.size() == 1);
  auto& a = cfg.settings.http_agents.front();
  CHECK(a.name == "llm");
  CHECK(a.url == "https://agents.example:8443/run?x=1");
  CHECK(a.bearer == "b");
  CHECK(a.timeout_ms == 5000);
  CHECK(a.connect_timeout_ms == 700);
  CHECK(a.max_in_flight == 3);
  CHECK(a.queue_timeout_ms == 0);
  CHECK(cfg.settings.command_agents.empty());
  for (auto [section, expected] :
       {std::pair{"url=\"ftp://x/agent\"", "url = \"ftp://x/agent\" must start with http://"},
        std::pair{"url=\"http://:80/\"", "has no host"},
        std::pair{"url=\"http://h:99999/\"", "has an invalid port"},
        std::pair{"url=\"http://user:pw@h/\"", "must not carry credentials"},
        std::pair{"url=\"http://h/\"\nmax-in-flight=0", "max-in-flight = 0"},
        std::pair{"url=\"http://h/\"\ntimeout-ms=\"soon\"", "timeout-ms"},
        std::pair{"url=\"http://h/\"\nexecutable=\"/bin/true\"", "unexpected executable"},
        std::pair{"url=5", "url expects a quoted string"},
        std::pair{"bearer=\"b\"", "executable (a command agent) or url (an HTTP agent)"}}) {
    temp_file f{std::string{"[agents.llm]\n"} + section + "\n"};
    auto err = error_of({"--config-file=" + f.path});
    CAPTURE(err);
    CHECK(err.find("[agents.llm]") != std::string::npos);
    CHECK(err.find(expected) != std::string::npos);
  }
}
