#!/bin/sh
# /init of a lab VM's initramfs, written by `rpiprov lab up --vm`: the distribution's kernel
# package has its disk and file system drivers as modules, and Debian's own initramfs takes
# some 20 minutes to build under emulation; this one is busybox and those few modules. It
# loads them, mounts the node's disk, applies the node's seed (the part of the initramfs
# that `lab up` appends per node: host name, address, keys, sudo) on every boot, and hands
# over to systemd.
export PATH=/bin
b=busybox
say() { echo "rpiprov-init: $*" > /dev/kmsg 2>/dev/null || echo "rpiprov-init: $*"; }
$b mount -t proc proc /proc
$b mount -t sysfs sysfs /sys
$b mount -t devtmpfs devtmpfs /dev
for m in $($b cat /modules/order); do
  $b insmod /modules/$m || say "insmod $m failed"
done
if $b grep -qw rpiprov.probe /proc/cmdline; then
  # The accelerator's boot test: this far is enough.
  say "probe ok"
  $b poweroff -f
fi
i=0
while [ ! -b /dev/vda ]; do
  i=$((i+1)); [ $i -lt 600 ] || { say "no disk /dev/vda after 60 s"; $b sleep 3600; }
  $b sleep 0.1
done
R=/root
$b mount -t ext4 -o rw /dev/vda $R || { say "cannot mount /dev/vda"; $b sleep 3600; }
$b mount --move /dev $R/dev
$b mount --move /proc $R/proc
$b mount --move /sys $R/sys
S=/seed
if [ -d $S ]; then
  name=$($b cat $S/hostname)
  $b cp $S/hostname $R/etc/hostname
  $b printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost\n' "$name" > $R/etc/hosts
  $b cp $S/network $R/etc/systemd/network/10-rpiprov-lab.network
  $b rm -f $R/etc/resolv.conf
  $b cp $S/resolv.conf $R/etc/resolv.conf
  # Only the node's own host key (the one in the lab's known_hosts).
  $b rm -f $R/etc/ssh/ssh_host_*
  $b cp $S/ssh_host_ed25519_key $S/ssh_host_ed25519_key.pub $R/etc/ssh/
  $b chmod 600 $R/etc/ssh/ssh_host_ed25519_key
  $b mkdir -p $R/home/pi/.ssh
  $b cp $S/authorized_keys $R/home/pi/.ssh/authorized_keys
  $b chroot $R /bin/chown -R pi:pi /home/pi/.ssh
  $b chmod 700 $R/home/pi/.ssh
  $b chmod 600 $R/home/pi/.ssh/authorized_keys
  $b cp $S/sudoers $R/etc/sudoers.d/lab-pi
  $b chmod 440 $R/etc/sudoers.d/lab-pi
  if [ -e $S/password ]; then
    $b chroot $R /usr/sbin/chpasswd < $S/password
  else
    # '*': no password matches, yet the account is not locked.
    $b chroot $R /usr/sbin/usermod -p '*' pi
  fi
  # The lab's Docker ranges, once: bootstrap may change this file afterwards.
  if [ -e $S/daemon.json ] && [ ! -e $R/etc/docker/daemon.json ]; then
    $b mkdir -p $R/etc/docker
    $b cp $S/daemon.json $R/etc/docker/daemon.json
  fi
  # Modules this node must not have (`lab up --vm --without-module`).
  for m in $($b cat $S/without-modules 2>/dev/null); do
    for f in $($b find $R/lib/modules/$($b uname -r) -name "$m.ko*"); do $b rm -f "$f"; done
  done
  say "seeded $name"
fi
exec $b switch_root $R /sbin/init
