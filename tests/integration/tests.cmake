# Integration tests (issue 3): each script drives the real pollcast binary (@POLLCAST@, plain and
# ASan) against the scripted upstream (upstream_server.js) with real SSE clients: node's
# eventsource package, a raw node:http client and curl -N, applying patches with fast-json-patch
# from tests/oracle/node_modules. harness.js starts and stops everything by PID and bounds each
# test; a missing node or npm package is a failure, never a skip.
#
# convergence        50 eventsource subscribers, 50 varied changes, one upstream request per tick
# resume             Last-Event-ID / ?lastEventId= inside and outside the history, malformed ids
# resume_instances   3 instances make epochs in the same millisecond (fixed clock): ids differ; a
#                    client moving between instances with its Last-Event-ID gets data, no patch
# upstream_failures  500, 429 + Retry-After, invalid JSON, body cap, timeout, 304: events, backoff
# wire_contract      headers, retry:, ids, statuses, CORS, health, snapshot mode, shared pollers
# config_errors      FILE:LINE: message and exit 2 for each kind of error
# content_types      text/plain, application/octet-stream refused by default, taken with
#                    accept_any_content_type (named and [allow]); non-JSON refused either way
# diff_escapes       "\u00e9" then "é" (or "\/" then "/"): no patch; a real change keeps its escapes
# slow_subscriber    one client stops reading during 200 large changes: others on time, RSS bounded
# many_subscribers   2,000 concurrent subscribers converge
# shutdown           SIGTERM / SIGINT with 500 clients: clean ends, exit 0 within 5 s
# syscalls           strace -c: events to parked streams cost a write each, no epoll_ctl each
# detached_streams   parked streams are written outside libmicrohttpd (no MHD run per change),
#                    HTTP/1.1 chunks and HTTP/1.0 close, the end on reload and on SIGTERM, slow
#                    clients of either version reset by the queue bound
# io_threads_default io_threads = 0 takes the CPUs pollcast may run on (taskset -c 0: no I/O
#                    thread; N CPUs: N), not every online CPU; io_cpu_affinity = auto binds
#                    one I/O thread per CPU to a CPU of its own, none (or more threads than
#                    CPUs) leaves them to the kernel; the start-up line says which
# io_share           io_threads = 2 with pollcast-io2 stopped (ptrace): io1 writes its streams
#                    too, every change reaches every reader; hang-ups and held bytes wait for
#                    io2 and are acted on when it runs again; all converge, in order
# keepalive          comments from the keepalive wheel: every interval on a quiet stream, none
#                    while events come, an interval after the last event; 200 streams, half closed
# stream_end_keepalive  a stream that ended on a kept-alive connection leaves it to wait for its
#                    next request within request_timeout (idle or dripping), not for ever
# released_streams   a stream under way holds no libmicrohttpd connection: max_connections still
#                    counts it, its "stream closed" line comes at its end, 1.0 and 1.1 carry
#                    events, descriptors come back when the clients leave
# upstream_requests  method/body/body_file/content_type and query reach the upstream exactly;
#                    conditions only for GET/QUERY; a new body ends the streams on reload;
#                    respect_cache_control; query values in no event, log or metric
# upstream_oauth2    OAuth2 client credentials: one token request per expiry across 1,000
#                    subscribers and 2 pollers, renewed in the background; 401 -> one new token
#                    and a retried poll; 400 invalid_client as upstream-error with backoff;
#                    secret, tokens and query values in no event, JSON log line or metric
# upstream_connections  400 pollers on one upstream host keep their connections: next rounds
#                    of polls open almost no new TCP connection
#
# The stream tests run again with io_threads = 1 (every stream written by the main thread) and
# io_threads = 2 (two I/O threads), as integration.NAME-io1 and -io2; the default is the number
# of CPUs.
#
# The ASan variant (binary name ending in -asan) scales the work down and stretches timing bounds
# (POLLCAST_IT_SCALE, POLLCAST_IT_SLOW override both). Tests that load the machine or measure
# time share a resource lock so that ctest -j never runs two of them at once.
find_program(POLLCAST_NODE node)
if(NOT POLLCAST_NODE)
  set(POLLCAST_NODE node)
endif()
foreach(t convergence resume resume_instances wire_contract config_errors content_types syscalls
          diff_escapes)
  pollcast_test(NAME integration.${t} LABELS integration TIMEOUT 600
                COMMAND ${POLLCAST_NODE} ${CMAKE_SOURCE_DIR}/tests/integration/${t}.js @POLLCAST@)
endforeach()
foreach(t upstream_failures slow_subscriber many_subscribers shutdown upstream_requests
          upstream_oauth2 upstream_connections detached_streams stream_end_keepalive
          io_threads_default keepalive released_streams)
  pollcast_test(NAME integration.${t} LABELS integration TIMEOUT 600
                RESOURCE_LOCK pollcast_integration_timing
                COMMAND ${POLLCAST_NODE} ${CMAKE_SOURCE_DIR}/tests/integration/${t}.js @POLLCAST@)
endforeach()
# io_share stops one I/O thread with thread_stop (ptrace), built here.
add_executable(thread_stop ${CMAKE_CURRENT_LIST_DIR}/thread_stop.c)
pollcast_test(NAME integration.io_share LABELS integration TIMEOUT 600
              RESOURCE_LOCK pollcast_integration_timing
              ENVIRONMENT POLLCAST_THREAD_STOP=$<TARGET_FILE:thread_stop>
              COMMAND ${POLLCAST_NODE} ${CMAKE_SOURCE_DIR}/tests/integration/io_share.js @POLLCAST@)
foreach(t detached_streams shutdown slow_subscriber many_subscribers convergence syscalls
          released_streams stream_end_keepalive)
  foreach(n 1 2)
    pollcast_test(NAME integration.${t}-io${n} LABELS integration TIMEOUT 600
                  RESOURCE_LOCK pollcast_integration_timing
                  ENVIRONMENT POLLCAST_IT_IO_THREADS=${n}
                  COMMAND ${POLLCAST_NODE} ${CMAKE_SOURCE_DIR}/tests/integration/${t}.js @POLLCAST@)
  endforeach()
endforeach()
