# reactor/sources.cmake: the reactor's sources, for the top-level CMakeLists.
set(CHRONOS_REACTOR_SOURCES
    reactor/descriptor.cpp
    reactor/io_wait.cpp
    reactor/reactor.cpp
    reactor/blocking_pool.cpp
    reactor/net.cpp
    reactor/wait_fd.cpp)
