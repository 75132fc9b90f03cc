# CHRONOS_SANITIZE: address (ASan with UBSan), thread (TSan) or undefined (UBSan).
# Applied to everything the project builds, so that the library, the tests
# and the benchmarks agree.
if(CHRONOS_SANITIZE STREQUAL "")
  return()
elseif(CHRONOS_SANITIZE STREQUAL "address")
  set(_chronos_san "-fsanitize=address,undefined")
elseif(CHRONOS_SANITIZE STREQUAL "thread")
  set(_chronos_san "-fsanitize=thread")
elseif(CHRONOS_SANITIZE STREQUAL "undefined")
  set(_chronos_san "-fsanitize=undefined")
else()
  message(FATAL_ERROR "CHRONOS_SANITIZE must be empty, address, thread or undefined")
endif()
add_compile_options(${_chronos_san} -fno-omit-frame-pointer -fno-sanitize-recover=all)
add_link_options(${_chronos_san})
