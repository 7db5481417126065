# Cluster suite (issue 9): several real pollcast nodes (@POLLCAST@, plain and ASan) sharing one
# real redis-server, which each test starts on a free loopback port without persistence
# (--save '' --appendonly no) and stops, kills or restarts by PID (tests/cluster/lib.js). Nodes
# are started with generated [cluster] configs through tests/integration/harness.js; the scripted
# upstream (tests/integration/upstream_server.js) counts the requests it gets; clients are raw
# node:http SSE clients and eventsource, patches applied with fast-json-patch.
#
# three_nodes    3 nodes, one upstream: subscribers converge, the same ids everywhere, one
#                upstream request per tick (one poller cluster-wide), Redis work not O(subscribers)
# resume         read from node A, reconnect to B (Last-Event-ID) and C (?lastEventId=): only
#                the missed patches, from the shared history
# failover       kill -9 the owner: another node polls within lease + one interval; survivors'
#                ids go on without a fresh data, a gap or a duplicate
# fencing        SIGSTOP the owner mid-poll past its lease, SIGCONT it after a takeover: it does
#                not append; no id with two contents in the Redis stream or at any subscriber
# redis_restart  kill and restart redis-server: streams stay open, subscribers converge, the
#                transitions are logged, counted and shown on /readyz, a new epoch
# load_balancer  a real nginx round-robins 3,000 SSE clients over 3 nodes (ASan too)
# reload         SIGHUP one node with a changed definition: its own topic and epoch; the other
#                node's subscribers go on with the old one without a fresh data
# keys           no secret header, forwarded header value or URL token in any Redis key, value
#                or DUMP; every key has a TTL; another definition of a name is another topic; a
#                Redis password authenticates and is never shown
#
# ops.compose    compose.yaml parsed by podman-compose; the image, Dockerfile and mounted files it
#                names exist; the nginx config it mounts passes nginx -t; the configs pass
#                check-config; the README's cluster snippets match them
#
# The cluster tests run one at a time (RESOURCE_LOCK): each starts three nodes and a Redis, and
# their timing bounds assume the machine is not running another of them.
find_program(POLLCAST_NODE node)
if(NOT POLLCAST_NODE)
  set(POLLCAST_NODE node)
endif()
foreach(t three_nodes resume failover fencing redis_restart load_balancer reload keys)
  pollcast_test(NAME cluster.${t} LABELS cluster TIMEOUT 600
                RESOURCE_LOCK pollcast_integration_timing
                COMMAND ${POLLCAST_NODE} ${CMAKE_SOURCE_DIR}/tests/cluster/${t}.js @POLLCAST@)
endforeach()
pollcast_test(NAME ops.compose LABELS ops TIMEOUT 120
              COMMAND ${POLLCAST_NODE} ${CMAKE_SOURCE_DIR}/tests/cluster/compose.js @POLLCAST@)
