#!/usr/bin/env bash
# Starts a private OpenSSH server for the SFTP backend tests: SFTP only, one chrooted user,
# listening on 127.0.0.1 only. Idempotent: a server this script started before is stopped
# first, keys are kept, so known_hosts stays valid across restarts.
#
# Needs root (sshd's ChrootDirectory and privilege separation demand it).
#
#   SFTP_BASE  (default /srv/sftptest)  keys, config, log, chroot
#   SFTP_PORT  (default 2222)
#   SFTP_USER  (default backup; Debian ships this system user already)
#
# Writes $SFTP_BASE/env with the CAIRN_TEST_SFTP_* exports the tests read (PIDFILE lets the
# dropped-connection test find the listener's session children by pid):
#   . /srv/sftptest/env && cargo test -p cairn-backends --test sftp
set -euo pipefail

BASE=${SFTP_BASE:-/srv/sftptest}
PORT=${SFTP_PORT:-2222}
SFTP_USER=${SFTP_USER:-backup}

if [ "$(id -u)" -ne 0 ]; then
  echo "start-sshd.sh: must run as root (sshd chroot needs it)" >&2
  exit 1
fi
# sshd refuses a ChrootDirectory with any group/world-writable component, so /tmp (1777) fails
# only after authentication, with nothing but "Broken pipe" on the client side.
case "$BASE" in
  /tmp|/tmp/*|/var/tmp|/var/tmp/*) echo "start-sshd.sh: SFTP_BASE must not be under /tmp (sshd rejects the chroot)" >&2; exit 1 ;;
esac

if [ ! -x /usr/sbin/sshd ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server >/dev/null
fi
command -v ssh-keyscan >/dev/null || { echo "start-sshd.sh: ssh-keyscan missing (openssh-client)" >&2; exit 1; }

# Stop a previous instance of ours (only the pid recorded in our own pid file).
"$(dirname "$0")/stop-sshd.sh"

id "$SFTP_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$SFTP_USER"
GROUP=$(id -gn "$SFTP_USER")

install -d -o root -g root -m 0755 "$BASE" "$BASE/etc" "$BASE/etc/authorized_keys" "$BASE/chroot"
# The chroot itself must stay root-owned; the user writes only below repo/. Tests create one
# subdirectory of repo/ per repository, so they never share state.
install -d -o "$SFTP_USER" -g "$GROUP" -m 0755 "$BASE/chroot/repo"
[ -f "$BASE/etc/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C sftptest-host -f "$BASE/etc/ssh_host_ed25519_key"
[ -f "$BASE/client_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C sftptest-client -f "$BASE/client_ed25519"
install -o root -g root -m 0644 "$BASE/client_ed25519.pub" "$BASE/etc/authorized_keys/$SFTP_USER"

cat > "$BASE/etc/sshd_config" <<CFG
Port $PORT
ListenAddress 127.0.0.1
HostKey $BASE/etc/ssh_host_ed25519_key
PidFile $BASE/sshd.pid
AuthorizedKeysFile $BASE/etc/authorized_keys/%u
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UsePAM no
AllowUsers $SFTP_USER
LogLevel VERBOSE
# Tests open many short sessions at once; the default 10:30:100 drops some of them.
MaxStartups 100
Subsystem sftp internal-sftp
Match User $SFTP_USER
    ChrootDirectory $BASE/chroot
    ForceCommand internal-sftp
    AllowTcpForwarding no
    X11Forwarding no
    PermitTTY no
CFG

mkdir -p /run/sshd   # privilege-separation directory; missing on a fresh container
/usr/sbin/sshd -t -f "$BASE/etc/sshd_config"
rm -f "$BASE/sshd.pid"
/usr/sbin/sshd -f "$BASE/etc/sshd_config" -E "$BASE/sshd.log"   # daemonizes; needs its absolute path

ready=
for _ in $(seq 100); do
  if [ -s "$BASE/sshd.pid" ] && ssh-keyscan -T 2 -p "$PORT" -t ed25519 127.0.0.1 >/dev/null 2>&1; then
    ready=1; break
  fi
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "start-sshd.sh: sshd did not come up on 127.0.0.1:$PORT; log:" >&2
  tail -n 20 "$BASE/sshd.log" >&2 || true
  exit 1
fi

# known_hosts in the [host]:port form that ssh and libssh2 use for a non-22 port.
ssh-keyscan -p "$PORT" -t ed25519 127.0.0.1 2>/dev/null | sed "s/^127.0.0.1/[127.0.0.1]:$PORT/" > "$BASE/known_hosts"
[ -s "$BASE/known_hosts" ] || { echo "start-sshd.sh: ssh-keyscan returned no key" >&2; exit 1; }

cat > "$BASE/env" <<ENV
export CAIRN_TEST_SFTP_URL=sftp://$SFTP_USER@127.0.0.1:$PORT/repo CAIRN_TEST_SFTP_IDENTITY=$BASE/client_ed25519 CAIRN_TEST_SFTP_KNOWN_HOSTS=$BASE/known_hosts CAIRN_TEST_SFTP_ROOT=$BASE/chroot/repo CAIRN_TEST_SFTP_PIDFILE=$BASE/sshd.pid
ENV
echo "sshd pid $(cat "$BASE/sshd.pid") on 127.0.0.1:$PORT; . $BASE/env for the test variables"
