#!/bin/sh
# The image build of lab VMs, run by `rpiprov lab up --vm` on this machine as root, after
# debootstrap made ROOT (of the guest's architecture: commands in the chroot run under
# qemu-user where that differs from this machine's). Offline from Debian's packages:
#   build.sh system ROOT OUT INIT   the kernel (unpacked from Debian's package, without its
#                                    initramfs hooks), the system set up for a lab node, and
#                                    OUT/{vmlinuz,initrd.img,busybox,release}
#   build.sh docker ROOT             Debian's docker.io installed in ROOT
set -eu
phase=$1
R=$2
in_root() { chroot "$R" "$@"; }
mount -t proc proc "$R/proc"
trap 'umount "$R/proc" 2>/dev/null || true' EXIT
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
# No service starts inside the chroot.
printf '#!/bin/sh\nexit 101\n' > "$R/usr/sbin/policy-rc.d"
chmod 755 "$R/usr/sbin/policy-rc.d"

system() {
  OUT=$1
  INIT=$2
  arch=$(in_root dpkg --print-architecture)
  # The versioned package the distribution's kernel metapackage names.
  kpkg=$(in_root apt-cache depends "linux-image-$arch" | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n 1)
  [ -n "$kpkg" ] || { echo "no kernel package for $arch" >&2; exit 1; }
  mkdir -p "$R/tmp/debs"
  in_root sh -c "cd /tmp/debs && apt-get download -q $kpkg busybox-static"
  kx=$(mktemp -d "$OUT/kernel.XXXXXX")
  dpkg-deb -x "$R"/tmp/debs/linux-image-*.deb "$kx"
  dpkg-deb -x "$R"/tmp/debs/busybox-static_*.deb "$kx/bb"
  cp "$kx/bb/bin/busybox" "$OUT/busybox"
  release=$(ls "$kx/boot" | sed -n 's/^vmlinuz-//p' | head -n 1)
  mods="$kx/lib/modules/$release"
  [ -d "$mods" ] || mods="$kx/usr/lib/modules/$release"
  # Hardware a VM has none of: sound, graphics, cameras, radios (about 150 MB).
  for d in sound drivers/gpu drivers/media drivers/infiniband drivers/net/wireless drivers/iio drivers/staging; do
    rm -rf "$mods/kernel/$d"
  done
  mkdir -p "$R/usr/lib/modules" "$R/boot"
  rm -rf "$R/usr/lib/modules/$release"
  cp -a "$mods" "$R/usr/lib/modules/$release"
  cp -a "$kx/boot/." "$R/boot/"
  in_root depmod "$release"
  cp "$R/boot/vmlinuz-$release" "$OUT/vmlinuz"
  echo "$release" > "$OUT/release"
  initrd "$R/usr/lib/modules/$release" "$kx/initrd" "$INIT" "$OUT/busybox"
  (cd "$kx/initrd" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -1 -n > "$OUT/initrd.img"
  rm -rf "$kx" "$R/tmp/debs"

  # The node: user pi (its key, sudo and password come with each node's seed), the lab's
  # address by systemd-networkd, sshd with keys only, nothing on a timer, no clock sync
  # (no traffic but the lab's and the mirror's), a machine id of its own per clone.
  in_root sh -c 'id pi >/dev/null 2>&1 || useradd --create-home --user-group --shell /bin/bash pi'
  in_root usermod -p '*' pi
  in_root systemctl enable --quiet systemd-networkd
  in_root systemctl mask --quiet apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
    e2scrub_all.timer e2scrub_reap.service fstrim.timer getty@tty1.service
  printf '/dev/vda / ext4 defaults 0 1\n' > "$R/etc/fstab"
  mkdir -p "$R/etc/ssh/sshd_config.d"
  printf '# rpiprov lab: keys only, as the namespace nodes.\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\n' \
    > "$R/etc/ssh/sshd_config.d/rpiprov-lab.conf"
  rm -f "$R"/etc/ssh/ssh_host_*
  : > "$R/etc/machine-id"
  rm -f "$R/var/lib/dbus/machine-id"
}

# ROOT/usr/lib/modules/RELEASE -> DIR: busybox, /init and the modules that reach the disk
# (virtio over PCI, virtio_blk, ext4 and what they need, from modules.dep), in load order.
initrd() {
  M=$1
  D=$2
  mkdir -p "$D/bin" "$D/modules" "$D/dev" "$D/proc" "$D/sys" "$D/root"
  cp "$4" "$D/bin/busybox"
  ln -s busybox "$D/bin/sh"
  cp "$3" "$D/init"
  chmod 755 "$D/init"
  order=
  add() {
    for dep in $(sed -n "s|^$1: *||p" "$M/modules.dep"); do add "$dep"; done
    case " $order " in *" $1 "*) ;; *) order="$order $1" ;; esac
  }
  for want in virtio_pci virtio_blk crc32c_generic ext4; do
    path=$(sed -n "s|^\([^:]*/$want\.ko[.a-z]*\):.*|\1|p" "$M/modules.dep" | head -n 1)
    # Built in (no line in modules.dep): nothing to load.
    [ -z "$path" ] || add "$path"
  done
  : > "$D/modules/order"
  for p in $order; do
    f=$(basename "$p")
    case $f in
      *.ko.xz) xz -dc "$M/$p" > "$D/modules/${f%.xz}"; f=${f%.xz} ;;
      *.ko.zst) zstd -qdc "$M/$p" > "$D/modules/${f%.zst}"; f=${f%.zst} ;;
      *) cp "$M/$p" "$D/modules/$f" ;;
    esac
    echo "$f" >> "$D/modules/order"
  done
}

docker() {
  in_root apt-get install -y -q --no-install-recommends docker.io > /dev/null
}

case $phase in
  system) system "$3" "$4" ;;
  docker) docker ;;
  *) echo "unknown phase $phase" >&2; exit 2 ;;
esac
in_root apt-get clean
rm -f "$R/usr/sbin/policy-rc.d"
