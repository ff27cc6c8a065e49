#!/usr/bin/env bash
# Local stand-ins for the two base images of deploy/docker/Dockerfile, under their exact names,
# for machines that reach no image registry:
#   docker.io/library/rust:1-slim-bookworm   a `debootstrap --variant=minbase bookworm` root
#       with gcc and libc6-dev, and this machine's own Rust toolchain (rustc, cargo, the
#       standard library) where the official image keeps it (RUSTUP_HOME, CARGO_HOME, PATH);
#   gcr.io/distroless/cc-debian12:nonroot    glibc, libgcc_s, the CA bundle, /etc/passwd and
#       /etc/group with root, nobody and nonroot (65532), and nothing else: no shell.
# An image already in the storage is kept; only a missing one is made.
#
# Usage: base-images.sh MIRROR SCRATCH_DIR
# with CONTAINERS_CONF, CONTAINERS_STORAGE_CONF and CONTAINERS_REGISTRIES_CONF set to the
# storage the images go into. Needs debootstrap, podman, tar and rustc on PATH.
set -euo pipefail
mirror=$1
scratch=$2
rust_image=docker.io/library/rust:1-slim-bookworm
cc_image=gcr.io/distroless/cc-debian12:nonroot

if podman image exists "$rust_image" && podman image exists "$cc_image"; then
  exit 0
fi

root=$scratch/bookworm
rm -rf "$root"
debootstrap --variant=minbase --include=gcc,libc6-dev,ca-certificates,tzdata,netbase \
  bookworm "$root" "$mirror" >"$scratch/debootstrap.log" 2>&1 || {
  tail -20 "$scratch/debootstrap.log" >&2
  exit 1
}

if ! podman image exists "$cc_image"; then
  cc=$scratch/cc
  rm -rf "$cc"
  mkdir -p "$cc"/usr/lib "$cc"/usr/lib64 "$cc"/etc/ssl/certs "$cc"/home/nonroot "$cc"/tmp
  # bookworm's merged /usr: /lib and /lib64 are links into /usr, as in the real image.
  ln -s usr/lib "$cc"/lib
  ln -s usr/lib64 "$cc"/lib64
  chmod 1777 "$cc"/tmp
  chown 65532:65532 "$cc"/home/nonroot
  # The packages of the real image (distroless's static, base and cc layers: base-files,
  # netbase, tzdata, glibc, OpenSSL's library, libgcc_s, libgomp and libstdc++), without
  # documentation and character-set converters.
  (
    cd "$root"
    dpkg --root=. -L base-files netbase tzdata libc6 libssl3 libgcc-s1 libgomp1 libstdc++6 \
      | grep -v -E -e '^/usr/share/(doc|man|info|lintian|locale|bug|common-licenses)/' -e '/gconv/' \
      | sed 's|^/||' \
      | while read -r f; do
          if [ ! -d "$f" ] && { [ -f "$f" ] || [ -L "$f" ]; }; then
            printf '%s\0' "$f"
          fi
        done \
      | xargs -0 cp -a --parents -t "$cc"
    cp -a --parents etc/ssl/certs/ca-certificates.crt etc/nsswitch.conf -t "$cc"
  )
  cat >"$cc"/etc/passwd <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
  cat >"$cc"/etc/group <<'GROUP'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
GROUP
  tar --numeric-owner -C "$cc" -cf "$scratch/cc.tar" .
  podman import --quiet \
    --change 'USER 65532' \
    --change 'WORKDIR /home/nonroot' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    "$scratch/cc.tar" "$cc_image" >/dev/null
  rm -rf "$cc" "$scratch/cc.tar"
fi

if ! podman image exists "$rust_image"; then
  # The slim image's clean-up: no package lists, no downloaded packages, no documentation.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
  # This machine's toolchain: the compiler, cargo and the standard library, no docs.
  sysroot=$(rustc --print sysroot)
  version=$(rustc --version | cut -d' ' -f2)
  toolchain=/usr/local/rustup/toolchains/$version-x86_64-unknown-linux-gnu
  mkdir -p "$root$toolchain/bin" "$root"/usr/local/cargo/bin
  cp -a "$sysroot"/lib "$root$toolchain"/
  for tool in rustc cargo rustdoc; do
    cp -a "$sysroot/bin/$tool" "$root$toolchain/bin/"
    ln -s "$toolchain/bin/$tool" "$root/usr/local/cargo/bin/$tool"
  done
  tar --numeric-owner -C "$root" -cf "$scratch/rust.tar" .
  podman import --quiet \
    --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "ENV RUST_VERSION=$version" \
    --change 'CMD ["bash"]' \
    "$scratch/rust.tar" "$rust_image" >/dev/null
  rm -f "$scratch/rust.tar"
fi
rm -rf "$root"
