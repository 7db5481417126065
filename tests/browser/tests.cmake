# The live viewer (issue 5): web/viewer.html, served at GET / from src/viewer.c, tested in
# headless Chromium (Debian's chromium, /usr/bin/chromium) driven by playwright-core from
# tests/browser/package.json (installed with `npm ci` there; nothing is installed at test time).
# Each variant writes its screenshot to BUILD/browser/viewer<variant>.png.
find_program(POLLCAST_BROWSER_NODE node)
if(NOT POLLCAST_BROWSER_NODE)
  # ctest then reports "Could not find executable node": a failure, not a skip.
  set(POLLCAST_BROWSER_NODE node)
endif()
pollcast_test(NAME browser.viewer LABELS browser integration TIMEOUT 120
              COMMAND ${POLLCAST_BROWSER_NODE} ${CMAKE_SOURCE_DIR}/tests/browser/viewer_test.js
                      @POLLCAST@ ${CMAKE_BINARY_DIR}/browser/viewer@VARIANT@.png)
# src/viewer.c must be what web/embed.cmake generates from web/viewer.html.
add_test(NAME browser.viewer_embedded
         COMMAND ${CMAKE_COMMAND} -DCHECK=ON -P ${CMAKE_SOURCE_DIR}/web/embed.cmake)
set_tests_properties(browser.viewer_embedded PROPERTIES LABELS "browser;unit" TIMEOUT 30)
