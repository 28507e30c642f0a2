// event-router: the router binary. Configuration: caf-application.conf in the working
// directory (or --config-file=PATH) and --router.key=value overrides; see README.

#include <csignal>
#include <iostream>

#include <caf/actor_system_config.hpp>

#include "app/config.hpp"
#include "app/router_server.hpp"
#include "context/jwt_auth.hpp"

namespace {

constexpr const char* demo_user = "demo-user";

void print_banner(const er::app::loaded_config& cfg, unsigned short port) {
  auto& s = cfg.settings;
  auto host = s.host.find(':') == std::string::npos ? s.host : "[" + s.host + "]"; // IPv6
  auto url = "ws://" + host + ":" + std::to_string(port) + "/ws";
  std::cout << "event-router listening on " << url << " (server-id " << s.server_id << ", "
            << (cfg.config_file.empty() ? "embedded defaults" : "config " + cfg.config_file)
            << ")\n";
  // A token signed with a real secret must not reach a log (DESIGN §3): the banner carries
  // one only for a development setup (the shipped secret on loopback), as the console does.
  if (er::app::dev_tokens_allowed(s)) {
    auto token = er::context::mint_token(er::app::jwt_settings_of(s), demo_user,
                                         std::chrono::seconds{s.demo_token_ttl_s});
    std::cout << "demo token for user '" << demo_user << "' (valid " << s.demo_token_ttl_s
              << " s):\n  " << token << "\n"
              << "try it:   ./build/router-client --url=" << url << " --token=" << token
              << "   (then type {\"type\":\"ping\"})\n"
              << "browser:  new WebSocket(\"" << url << "\", [\"router.v1\", \"jwt." << token
              << "\"])\n";
  } else {
    std::cout << "tokens:   signed by your backend with router.jwt-secret, or for a test: "
                 "event-router --mint-token=USER"
              << (cfg.config_file.empty() ? "" : " --config-file=" + cfg.config_file) << "\n";
  }
  std::cout << "console:  http://" << host << ":" << port << "/\n"
            << "stop with Ctrl-C (SIGINT) or SIGTERM" << std::endl;
}

} // namespace

int main(int argc, char** argv) {
  // Block the stop signals before any thread starts, so that only sigwait below sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  er::app::loaded_config cfg;
  try {
    cfg = er::app::load_config(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const er::app::config_error& e) {
    std::cerr << "event-router: configuration error: " << e.what() << std::endl;
    return 2;
  }
  if (cfg.help) {
    std::cout << "usage: event-router [--config-file=PATH] [--router.KEY=VALUE ...]\n"
              << er::app::options_help();
    return 0;
  }
  if (cfg.mint_token_for) {
    std::cout << er::context::mint_token(er::app::jwt_settings_of(cfg.settings), *cfg.mint_token_for,
                                         std::chrono::seconds{cfg.settings.demo_token_ttl_s})
              << std::endl;
    return 0;
  }
  auto caf_config = std::make_unique<caf::actor_system_config>();
  auto file = cfg.config_file.empty() ? std::string{"/dev/null"} : cfg.config_file;
  if (auto err = caf_config->parse(cfg.caf_args, file.c_str())) {
    std::cerr << "event-router: configuration error: " << caf::actor_system_config::render(err)
              << std::endl;
    return 2;
  }
  try {
    er::app::router_server server{cfg.settings, std::move(caf_config)};
    print_banner(cfg, server.port());
    int signal = 0;
    sigwait(&stop_signals, &signal);
    std::cout << "event-router: " << (signal == SIGINT ? "SIGINT" : "SIGTERM")
              << ", closing connections" << std::endl;
    server.shutdown(std::chrono::milliseconds{cfg.settings.drain_timeout_ms});
    std::cout << "event-router: stopped" << std::endl;
  } catch (const er::app::config_error& e) {
    std::cerr << "event-router: configuration error: " << e.what() << std::endl;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "event-router: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
