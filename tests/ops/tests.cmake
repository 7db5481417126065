# Operations suite (issue 5): metrics through a strict Prometheus text-format parser, the access
# log and upstream state lines in text and JSON (no secrets), SIGHUP reload, the Streamdata.io
# compatible endpoint, and every example of the README run against a real pollcast. Each script
# drives the real binary (@POLLCAST@, plain and ASan) with tests/integration/harness.js.
find_program(POLLCAST_NODE node)
if(NOT POLLCAST_NODE)
  set(POLLCAST_NODE node)
endif()
foreach(t metrics access_log reload compat readme)
  pollcast_test(NAME ops.${t} LABELS ops TIMEOUT 300
                COMMAND ${POLLCAST_NODE} ${CMAKE_SOURCE_DIR}/tests/ops/${t}.js @POLLCAST@)
endforeach()
