# router-load: the load-test client (issue 4). Included at the end of the top-level
# CMakeLists.txt, after er_tests is defined.

target_sources(er_net PRIVATE net/async_ws_client.cpp net/async_http_client.cpp)
# router-load checks every frame it receives: simdjson parses them (Debian's libsimdjson-dev).
find_package(simdjson REQUIRED)
target_link_libraries(er_actors PUBLIC simdjson::simdjson)
target_sources(er_actors PRIVATE actors/load_check.cpp actors/load_client.cpp actors/load_collector.cpp
  actors/load_publish_check.cpp actors/load_publisher.cpp)

add_executable(router-load app/router_load_main.cpp)
target_link_libraries(router-load PRIVATE er_app)

if(TARGET er_tests)
  target_sources(er_tests PRIVATE tests/load_test.cpp tests/load_publish_test.cpp)
  target_compile_definitions(er_tests PRIVATE ER_ROUTER_LOAD_BINARY="$<TARGET_FILE:router-load>")
  add_dependencies(er_tests router-load)
endif()

# The shared-manager variant: one actor for every connection, for bench/run.sh only.
add_executable(shared-manager-bench bench/shared_manager.cpp)
target_link_libraries(shared-manager-bench PRIVATE er_app)
