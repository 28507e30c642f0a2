#include "app/http_api.hpp"

#include <algorithm>
#include <cctype>

#include <caf/event_based_actor.hpp>
#include <nlohmann/json.hpp>
#include <openssl/crypto.h>

#include "app/console.hpp"
#include "protocol/bounded_json.hpp"
#include "protocol/message_types.hpp"
#include "context/token_source.hpp"
#include "context/user_execution_context.hpp"

namespace er::app {

namespace {

using json = nlohmann::json;
using respond_fn = std::function<void(net::http_reply)>;
constexpr auto router_timeout = std::chrono::seconds{5};
constexpr std::string_view users_prefix = "/api/v1/users/";
constexpr std::string_view disconnect_suffix = "/disconnect";

net::http_reply reply(unsigned status, const json& body) {
  return {status, body.dump(), "application/json"};
}

net::http_reply error_reply(unsigned status, const std::string& message) {
  return reply(status, json{{"error", message}});
}

net::http_reply method_not_allowed(const std::string& allowed) {
  auto r = error_reply(405, "use " + allowed);
  r.headers.emplace_back("Allow", allowed);
  return r;
}

bool api_dev_tokens(const http_api& api) {
  return api.dev_tokens.has_value();
}

bool authorized(const http_api& api, std::string_view authorization) {
  constexpr std::string_view bearer = "Bearer ";
  if (authorization.substr(0, bearer.size()) != bearer)
    return false;
  auto key = authorization.substr(bearer.size());
  // Constant time: the comparison must not tell how much of a guess was right.
  return key.size() == api.api_key.size()
         && CRYPTO_memcmp(key.data(), api.api_key.data(), key.size()) == 0;
}

/// Asks the router from a short-lived actor and answers with `render(result)`.
template <class Result, class Render, class... Ts>
void ask_router(const http_api& api, respond_fn respond, Render render, Ts... msg) {
  // The router is passed as an argument: CAF 0.17 binds a null reference for empty ones.
  api.system.spawn(
    [respond, render, msg...](caf::event_based_actor* self, const actors::router_actor& router) {
      self->request(router, router_timeout, msg...)
        .then([=](Result& result) { respond(render(result)); },
              [=](caf::error&) { respond(error_reply(503, "the router did not answer")); });
    },
    api.router);
}

/// 1-64 characters of [A-Za-z0-9_.:-]: safe in logs, labels and client switch statements.
bool well_formed_type(const std::string& type) {
  return !type.empty() && type.size() <= 64
         && std::all_of(type.begin(), type.end(), [](unsigned char c) {
              return std::isalnum(c) || c == '_' || c == '.' || c == ':' || c == '-';
            });
}

/// The publish body, validated; or the reason it is refused.
std::variant<std::pair<std::string, protocol::outbound_event>, std::string>
parse_publish(std::string_view body) {
  auto parsed = protocol::parse_json(body);
  if (parsed.too_deep)
    return protocol::too_deep_reason("the body");
  auto& doc = parsed.doc;
  if (!doc.is_object())
    return std::string{"the body must be a JSON object"};
  auto user = doc.find("user_id");
  if (user == doc.end() || !user->is_string() || !context::is_valid_subject(user->get<std::string>()))
    return std::string{"user_id must be a user's id"};
  auto event = doc.find("event");
  if (event == doc.end() || !event->is_object())
    return std::string{"event must be an object"};
  auto type = event->find("type");
  if (type == event->end() || !type->is_string() || !well_formed_type(type->get<std::string>()))
    return std::string{"event.type must be 1-64 characters of [A-Za-z0-9_.:-]"};
  if (protocol::is_reserved_type(type->get<std::string>()))
    return "event.type " + protocol::quote_excerpt(type->get_ref<const std::string&>()) + " is reserved";
  auto data = event->find("data");
  if (data != event->end() && !data->is_object())
    return std::string{"event.data must be an object"};
  protocol::outbound_event ev;
  ev.type = type->get<std::string>();
  ev.published = true;
  ev.created = std::chrono::steady_clock::now();
  if (data != event->end())
    ev.data = *data;
  return std::make_pair(user->get<std::string>(), std::move(ev));
}

void publish(const http_api& api, const net::http_request_view& req, respond_fn respond) {
  auto parsed = parse_publish(req.body);
  if (auto* why = std::get_if<std::string>(&parsed))
    return respond(error_reply(400, *why));
  auto& [user, event] = std::get<0>(parsed);
  ask_router<actors::cluster_result>(
    api, std::move(respond),
    [metrics = api.metrics](const actors::cluster_result& r) {
      if (!r.available)
        return error_reply(503, "cluster_unavailable");
      if (metrics) // accepted: a refused publish (503) is not counted
        metrics->published();
      return reply(202, json{{"delivered", r.connections}});
    },
    actors::publish_atom::value, user, event);
}

void disconnect(const http_api& api, std::string user, respond_fn respond) {
  ask_router<actors::cluster_result>(
    api, std::move(respond),
    [](const actors::cluster_result& r) {
      return r.available ? reply(200, json{{"disconnected", r.connections}})
                         : error_reply(503, "cluster_unavailable");
    },
    actors::disconnect_atom::value, std::move(user));
}

/// POST /api/v1/dev/token {"user_id": U}: a demo token for U, on a development setup only.
net::http_reply dev_token(const http_api& api, std::string_view body) {
  auto doc = protocol::parse_json(body).doc;
  auto user = doc.is_object() ? doc.find("user_id") : doc.end();
  if (user == doc.end() || !user->is_string() || !context::is_valid_subject(user->get<std::string>()))
    return error_reply(400, "user_id must be a user's id");
  auto token = context::mint_token(*api.dev_tokens, user->get<std::string>(), api.dev_token_ttl);
  return reply(200, json{{"token", token},
                         {"user_id", *user},
                         {"expires_in", api.dev_token_ttl.count()}});
}

void health(const http_api& api, respond_fn respond) {
  auto uptime = std::chrono::duration_cast<std::chrono::seconds>(
                  std::chrono::steady_clock::now() - api.started).count();
  auto runs = api.metrics ? api.metrics->active_runs() : 0.0;
  auto replay = json::object();
  if (api.replay_budget)
    replay = json{{"bytes", api.replay_budget->used()}, {"budget", api.replay_budget->limit()}};
  ask_router<actors::router_stats>(
    api, std::move(respond),
    [server_id = api.server_id, uptime, runs, replay](const actors::router_stats& s) {
      auto body = json{{"status", "ok"},
                       {"server_id", server_id},
                       {"connections", s.connections},
                       {"users", s.users},
                       {"detached", s.detached},
                       {"runs", static_cast<std::uint64_t>(runs)},
                       {"replay", replay},
                       {"uptime_s", uptime}};
      if (s.clustered)
        body["cluster"] = json{{"node_id", s.cluster.node_id},
                               {"nodes", s.cluster.nodes},
                               {"redis", s.cluster.redis_up ? "up" : "down"}};
      return reply(200, body);
    },
    actors::stats_atom::value);
}

} // namespace

void http_api::handle(const net::http_request_view& req, respond_fn respond) const {
  auto path = context::target_path(req.target);
  auto method_is = [&](std::string_view m) { return req.method == m; };
  if (method_is("GET"))
    if (auto asset = console_reply(path, console_dir))
      return respond(std::move(*asset));
  if (path == "/api/v1/dev/token") {
    if (!api_dev_tokens(*this))
      return respond(error_reply(404, "not found"));
    return respond(method_is("POST") ? dev_token(*this, req.body) : method_not_allowed("POST"));
  }
  if (path == "/healthz")
    return method_is("GET") ? health(*this, respond) : respond(method_not_allowed("GET"));
  if (path == "/metrics") {
    if (!method_is("GET"))
      return respond(method_not_allowed("GET"));
    if (metrics && replay_budget)
      metrics->set_replay(static_cast<double>(replay_budget->used()),
                          static_cast<double>(replay_budget->limit()));
    if (metrics)
      metrics->sample_heap();
    return respond({200, metrics ? metrics->render() : std::string{},
                    "text/plain; version=0.0.4; charset=utf-8"});
  }
  bool is_publish = path == "/api/v1/publish";
  bool is_disconnect = path.substr(0, users_prefix.size()) == users_prefix
                       && path.size() > users_prefix.size() + disconnect_suffix.size()
                       && path.substr(path.size() - disconnect_suffix.size()) == disconnect_suffix;
  if (!is_publish && !is_disconnect)
    return respond(error_reply(404, "not found"));
  if (!method_is("POST"))
    return respond(method_not_allowed("POST"));
  if (!authorized(*this, req.authorization))
    return respond(error_reply(401, "a valid API key is required (Authorization: Bearer <key>)"));
  if (is_publish)
    return publish(*this, req, std::move(respond));
  auto user = path.substr(users_prefix.size(),
                          path.size() - users_prefix.size() - disconnect_suffix.size());
  if (user.find('/') != std::string_view::npos)
    return respond(error_reply(404, "not found"));
  // A path segment: `+` is a plus (user ids are often e-mail addresses), `%2B` too.
  auto user_id = context::percent_decode(user);
  if (!context::is_valid_subject(user_id))
    return respond(error_reply(400, "the path must name a user's id"));
  disconnect(*this, std::move(user_id), std::move(respond));
}

} // namespace er::app
