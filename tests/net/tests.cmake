# tests/net/tests.cmake: the reactor's tests, built into chronos_tests.
target_sources(chronos_tests PRIVATE
  ${CMAKE_CURRENT_SOURCE_DIR}/net/tcp_echo_test.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/net/tcp_error_test.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/net/interop_test.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/net/ipv6_test.cpp)
