#!/bin/bash
# chown -R vs volsec apply --owner under only CAP_CHOWN, 200,000 files, RAM-backed ext4 and tmpfs.
set -e
V=${V:-target/release/volsec}
CAPS=(setpriv --inh-caps=-all,+chown --ambient-caps=-all,+chown --bounding-set=-all,+chown --)
run() { # fs
  local fs=$1 m=/mnt/ib
  mkdir -p $m
  if [ $fs = ext4 ]; then
    rm -f /dev/shm/ib.img; truncate -s 128G /dev/shm/ib.img; mkfs.ext4 -q -J size=1024 /dev/shm/ib.img; mount -o loop /dev/shm/ib.img $m
  else
    mount -t tmpfs -o size=4g tmpfs $m
  fi
  python3 - $m/vol <<'PY'
import os,sys
root=sys.argv[1]; os.makedirs(root)
os.chmod(root,0o755)
for d in range(400):
    p=os.path.join(root,f"d{d:03}"); os.mkdir(p,0o755)
    for f in range(499):
        fd=os.open(os.path.join(p,f"f{f}"),os.O_CREAT|os.O_WRONLY,0o644); os.close(fd)
os.mkdir(os.path.join(root,"lost+found"),0o700)
PY
  # bitnami's volumePermissions: every top-level entry but lost+found, chown -R, as root with only CAP_CHOWN
  bitnami() { find $m/vol -mindepth 1 -maxdepth 1 -not -name lost+found -print0 | "${CAPS[@]}" xargs -0 -r chown -R 1001:1001; "${CAPS[@]}" chown 1001:1001 $m/vol; }
  reset() { chown -R 0:0 $m/vol; find $m/vol -type d -exec chmod 0755 {} +; find $m/vol -type f -exec chmod 0644 {} +; chmod 0700 $m/vol/lost+found; sync -f $m/vol; }
  for rep in 1 2 3; do
    reset
    s=$(date +%s.%N); bitnami; e=$(date +%s.%N)
    echo "$fs chown-R first rep$rep $(echo "$e - $s" | bc)"
    sync -f $m/vol
    s=$(date +%s.%N); bitnami; e=$(date +%s.%N)
    echo "$fs chown-R restart rep$rep $(echo "$e - $s" | bc)"
    reset
    s=$(date +%s.%N); "${CAPS[@]}" $V apply --owner 1001 --fs-group 1001 --change-policy OnRootMismatch --exclude lost+found --quiet $m/vol; e=$(date +%s.%N)
    echo "$fs volsec first rep$rep $(echo "$e - $s" | bc)"
    sync -f $m/vol
    s=$(date +%s.%N); "${CAPS[@]}" $V apply --owner 1001 --fs-group 1001 --change-policy OnRootMismatch --exclude lost+found --quiet $m/vol; e=$(date +%s.%N)
    echo "$fs volsec restart rep$rep $(echo "$e - $s" | bc)"
  done
  "${CAPS[@]}" $V apply --owner 1001 --fs-group 1001 --change-policy Always --exclude lost+found --output json $m/vol | grep -E '"(visited|changed|unchanged|threads|not_permitted)"' || true
  umount $m
  rm -f /dev/shm/ib.img
}
run ext4
run tmpfs
