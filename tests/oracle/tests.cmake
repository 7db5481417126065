# The node oracle tests (issue 2): pollcast diff and pollcast apply checked against independent
# RFC 6902 implementations from npm (tests/oracle/package.json, pinned by package-lock.json and
# installed by scripts/install-deps.sh). Each script takes the pollcast binary as its first
# argument; a missing node or node_modules makes the tests fail, never skip.
find_program(POLLCAST_NODE node)
if(NOT POLLCAST_NODE)
  # ctest then reports "Could not find executable node" for each: a failure, not a skip.
  set(POLLCAST_NODE node)
endif()
foreach(t json_patch_tests apply_suite property diff_pairs cli)
  pollcast_test(NAME oracle.${t} LABELS oracle TIMEOUT 600
                COMMAND ${POLLCAST_NODE} ${CMAKE_SOURCE_DIR}/tests/oracle/${t}.js @POLLCAST@
                        --variant=@VARIANT@)
endforeach()
