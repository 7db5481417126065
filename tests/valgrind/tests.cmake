# Valgrind runs (issue 4, "Prove it"; the cluster suite, issue 9): integration, security and
# cluster tests with the plain daemon under valgrind --leak-check=full
# --errors-for-leak-kinds=definite --error-exitcode=99, through the harness's POLLCAST_WRAPPER
# (tests/integration/harness.js), which also scales the work down and stretches timing bounds.
# A memory error or a definite leak makes pollcast exit 99 at its SIGTERM teardown, which fails
# the test. Label `valgrind`.
#
# Slow (minutes per test, and the machine is loaded meanwhile): registered only when the
# tree is configured with -DPOLLCAST_VALGRIND=ON, never by default.
#   cmake -S . -B build-vg -DPOLLCAST_VALGRIND=ON && cmake --build build-vg -j2 &&
#   ctest --test-dir build-vg -L valgrind --output-on-failure
option(POLLCAST_VALGRIND "Register the integration tests under valgrind (label valgrind)" OFF)
if(POLLCAST_VALGRIND)
  find_program(POLLCAST_VALGRIND_EXE valgrind REQUIRED)
  find_program(POLLCAST_NODE node)
  if(NOT POLLCAST_NODE)
    set(POLLCAST_NODE node)
  endif()
  set(VG_WRAPPER "${POLLCAST_VALGRIND_EXE} --quiet --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99 --track-fds=no")
  foreach(t convergence resume upstream_failures wire_contract config_errors)
    add_test(NAME valgrind.integration.${t}
             COMMAND ${POLLCAST_NODE} ${CMAKE_SOURCE_DIR}/tests/integration/${t}.js
                     $<TARGET_FILE:pollcast>
             WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
    set_tests_properties(valgrind.integration.${t} PROPERTIES LABELS valgrind TIMEOUT 1800
      RESOURCE_LOCK pollcast_integration_timing
      ENVIRONMENT "POLLCAST_WRAPPER=${VG_WRAPPER};POLLCAST_SRC=${CMAKE_SOURCE_DIR};POLLCAST_TESTDATA=${SHARED_TESTDATA}")
  endforeach()
  foreach(t ssrf auth headers limits)
    add_test(NAME valgrind.security.${t}
             COMMAND ${POLLCAST_NODE} ${CMAKE_SOURCE_DIR}/tests/security/${t}.js
                     $<TARGET_FILE:pollcast>
             WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
    set_tests_properties(valgrind.security.${t} PROPERTIES LABELS valgrind TIMEOUT 1800
      RESOURCE_LOCK pollcast_integration_timing
      ENVIRONMENT "POLLCAST_WRAPPER=${VG_WRAPPER};POLLCAST_SRC=${CMAKE_SOURCE_DIR};POLLCAST_TESTDATA=${SHARED_TESTDATA}")
  endforeach()
  # The cluster suite (issue 9): every node of a test runs under valgrind; the harness scales the
  # work down (the load balancer test to 300 clients) and stretches its timing bounds.
  foreach(t three_nodes resume failover fencing redis_restart load_balancer reload keys)
    set(vg_env "POLLCAST_WRAPPER=${VG_WRAPPER};POLLCAST_SRC=${CMAKE_SOURCE_DIR};POLLCAST_TESTDATA=${SHARED_TESTDATA}")
    if(t STREQUAL "load_balancer")
      list(APPEND vg_env "POLLCAST_IT_SCALE=0.1")
    endif()
    add_test(NAME valgrind.cluster.${t}
             COMMAND ${POLLCAST_NODE} ${CMAKE_SOURCE_DIR}/tests/cluster/${t}.js
                     $<TARGET_FILE:pollcast>
             WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
    set_tests_properties(valgrind.cluster.${t} PROPERTIES LABELS valgrind TIMEOUT 1800
      RESOURCE_LOCK pollcast_integration_timing ENVIRONMENT "${vg_env}")
  endforeach()
endif()
