# pollcast in a container: a build stage that installs the dependencies with the same script CI
# uses (scripts/install-deps.sh) and compiles the daemon, and a bookworm-slim runtime stage with
# only the shared libraries, running as an unprivileged user.
#
#   docker build -t pollcast .
#   docker run --rm -p 8080:8080 pollcast                      # the built-in demo stream
#   docker run --rm -p 8080:8080 -v $PWD/pollcast.ini:/etc/pollcast/pollcast.ini:ro pollcast
#   docker run --rm -p 8080:8080 -e POLLCAST_UPSTREAM_PRICES_URL=https://api.example.com/prices pollcast
#
# scripts/docker-verify.sh builds this file with Debian's buildah where no Docker daemon runs (a
# debian:bookworm-slim imported from a debootstrap root) and runs the image it gives.

FROM debian:bookworm-slim AS build
WORKDIR /src
# The install script alone first, so that the dependency layer is cached across source changes.
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN bash scripts/install-deps.sh --build && rm -rf /var/lib/apt/lists/*
# The whole tree but what .dockerignore leaves out (build trees, node_modules, .git).
COPY . .
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DPOLLCAST_WERROR=ON \
 && cmake --build build -j "$(nproc)" --target pollcast \
 && build/pollcast --version

FROM debian:bookworm-slim
COPY scripts/install-deps.sh /tmp/install-deps.sh
RUN bash /tmp/install-deps.sh --runtime \
 && rm -rf /var/lib/apt/lists/* /tmp/install-deps.sh \
 && groupadd --system --gid 10001 pollcast \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin pollcast \
 && mkdir -p /etc/pollcast \
 && printf '%s\n' \
      '; The image default: the built-in demo upstream. Mount your own file over this one' \
      '; (-v ./pollcast.ini:/etc/pollcast/pollcast.ini:ro), or set POLLCAST_* variables.' \
      '[upstream demo]' \
      'url = builtin:demo' \
      'interval = 1s' \
      > /etc/pollcast/pollcast.ini
COPY --from=build /src/build/pollcast /usr/local/bin/pollcast
# Inside the container pollcast listens on every interface; the variable overrides the listen key
# of any mounted file (set it to change the port).
ENV POLLCAST_SERVER_LISTEN=0.0.0.0:8080
RUN pollcast check-config /etc/pollcast/pollcast.ini
USER 10001:10001
EXPOSE 8080
# No curl in the runtime image: bash's /dev/tcp asks /healthz on the configured port.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${POLLCAST_SERVER_LISTEN##*:} && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["pollcast"]
CMD ["serve", "-c", "/etc/pollcast/pollcast.ini"]
