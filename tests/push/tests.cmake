# Push streams, refresh and plain reads (issue 12, sections 1, 2 and 4), against the real daemon
# with the scripted upstream (tests/integration/upstream_server.js) and real SSE clients; patches
# applied with fast-json-patch from tests/oracle/node_modules (harness.js).
#
# push.publish   PUT and PATCH reach subscribers exactly (ids, 200/204, ETag); no data before the
#                first publish; failed PATCH (409 test, 422 op, 415, 400 with byte offset) changes
#                nothing; two publishers racing with If-Match lose no update; 401/404/405; 413
#                with and without Content-Length; state_file across a restart
# push.auth      [auth]: a pollcast.publish JWT publishes, a subscriber token gets 403; config
#                errors for a [stream] nobody could publish to or with a url
# push.refresh   POST /streams/NAME/refresh: 100 concurrent calls, the change arrives at once (60 s
#                interval), one upstream request in flight at most; 401/404/405
# push.cors      preflights (curl -X OPTIONS) of PUT/PATCH on /streams/NAME and POST on .../refresh
#                allow those methods and Authorization, Content-Type, If-Match for cors_origin
#                only; answers expose ETag
# push.plain_reads  Accept: application/json on /streams/NAME, /proxy and the Streamdata.io form:
#                the document, ETag = the id, 304, max-age; 200 concurrent readers over several
#                ticks cost one upstream request per tick; a first read waits, 504 after the poll
#                timeout; push streams (404 before the first publish, no-cache)
# push.cluster   with [cluster]: two nodes and a real redis-server; PUT and PATCH alternately on
#                both nodes reach subscribers on both with the same ids; If-Match publishers and
#                PATCHes racing from the two nodes (several at once per node: queued, no 503)
#                lose no update; late subscribers and plain
#                reads on either node get the current version; state_file refused; Redis gone:
#                503 with Retry-After; a polled stream is refreshed by its polling node
# push.cluster_refresh  two nodes and a real redis-server: a refresh on the node that does not
#                poll reaches the one that does (PUBLISH), at once, one upstream request; 50 at
#                once coalesced; on the owner; Redis gone: "cluster":"degraded", refreshed alone
find_program(POLLCAST_NODE node)
if(NOT POLLCAST_NODE)
  set(POLLCAST_NODE node)
endif()
foreach(t publish auth refresh cors)
  pollcast_test(NAME push.${t} LABELS push integration TIMEOUT 300
                COMMAND ${POLLCAST_NODE} ${CMAKE_SOURCE_DIR}/tests/push/${t}.js @POLLCAST@)
endforeach()
pollcast_test(NAME push.plain_reads LABELS push integration TIMEOUT 300
              RESOURCE_LOCK pollcast_integration_timing
              COMMAND ${POLLCAST_NODE} ${CMAKE_SOURCE_DIR}/tests/push/plain_reads.js @POLLCAST@)
foreach(t cluster cluster_refresh)
  pollcast_test(NAME push.${t} LABELS push cluster TIMEOUT 300
                COMMAND ${POLLCAST_NODE} ${CMAKE_SOURCE_DIR}/tests/push/${t}.js @POLLCAST@)
endforeach()
