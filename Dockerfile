# kedge image: build on Debian 12 with the project's own setup script, run on a minimal
# Debian 12 runtime with only the shared libraries kedge links, as a non-root user.
#   docker build -t kedge:0.1.0 .
FROM debian:12 AS build
WORKDIR /src
COPY scripts/setup.sh scripts/setup.sh
RUN scripts/setup.sh
COPY . .
RUN rm -rf build-image \
 && cmake -S . -B build-image -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKEDGE_TESTS=OFF \
 && ninja -C build-image kedge \
 && strip --strip-debug build-image/src/kedge \
 && mkdir -p /rootfs/usr/local/bin /rootfs/etc \
 && cp build-image/src/kedge /rootfs/usr/local/bin/kedge \
 # The shared libraries kedge needs (and theirs), copied with their paths: a distroless-style
 # root file system with no shell and no package manager.
 && ldd build-image/src/kedge | awk '/=> \// {print $3} /^\t\/lib/ {print $1}' \
      | xargs -I{} cp --parents -L {} /rootfs/ \
 && cp --parents -L /etc/ssl/certs/ca-certificates.crt /rootfs/ \
 && echo 'kedge:x:65532:65532:kedge:/nonexistent:/usr/sbin/nologin' > /rootfs/etc/passwd \
 && echo 'kedge:x:65532:' > /rootfs/etc/group

FROM scratch
COPY --from=build /rootfs/ /
USER 65532:65532
EXPOSE 8080 8443 10254
ENTRYPOINT ["/usr/local/bin/kedge"]
CMD ["serve", "--help"]
