# pollcast watch (issue 5): unit tests of the event-stream parser and the live document
# (tests/watch/test_watch.c), and end-to-end tests that run `pollcast watch` against a real
# pollcast and the scripted upstream: its --changes lines, reconnection with Last-Event-ID,
# upstream errors, SIGINT, and the terminal mode in tmux.
foreach(v "" ${POLLCAST_VARIANTS})
  add_executable(test_watch${v} ${CMAKE_SOURCE_DIR}/tests/watch/test_watch.c)
  target_link_libraries(test_watch${v} PRIVATE pollcore${v})
endforeach()
pollcast_test(NAME watch.unit LABELS watch unit TIMEOUT 60 COMMAND $<TARGET_FILE:test_watch@VARIANT@>)

find_program(POLLCAST_WATCH_NODE node)
if(NOT POLLCAST_WATCH_NODE)
  # ctest then reports "Could not find executable node": a failure, not a skip.
  set(POLLCAST_WATCH_NODE node)
endif()
pollcast_test(NAME watch.e2e LABELS watch integration TIMEOUT 120
              COMMAND ${POLLCAST_WATCH_NODE} ${CMAKE_SOURCE_DIR}/tests/watch/watch_test.js @POLLCAST@)
pollcast_test(NAME watch.tty LABELS watch integration TIMEOUT 120
              COMMAND ${POLLCAST_WATCH_NODE} ${CMAKE_SOURCE_DIR}/tests/watch/tty_test.js @POLLCAST@)
