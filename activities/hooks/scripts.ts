// The shell scripts the hook activities run on the user's droplet: plain POSIX sh and coreutils (mv, sleep, date;
// setsid or nohup; ps if present), nothing installed.
//
// The freeze must never outlive dosvob. So before the freeze command runs, the freeze script arms a dead-man timer on
// the droplet itself: a detached `sleep N; thaw` that survives the SSH session, dosvob's worker and the network.
// Whoever thaws — the thaw activity, the timer, or a retried freeze cleaning up after an interrupted one — must first
// CLAIM the freeze's token by renaming the file `armed` to a name of its own. rename(2) is atomic, and only one rename
// of a file can succeed, so the thaw command runs exactly once per freeze whoever comes first; the others see the
// token gone and know who took it (the file it became). A failed thaw puts the token back, so the timer (or a retry)
// can still thaw; a thaw that succeeded (or a failed freeze, undone) ends the timer's sleep, which could do nothing.
//
// Layout on the droplet: ${TMPDIR:-/tmp}/dosvob-freeze-<id>/ (id: the run and the volume, so every attempt of one
// run's freeze finds the same directory), holding `current` (the newest generation) and one directory per
// generation: thaw.sh (the thaw command), armed (the token) or claimed-<who>, frozen (the freeze command succeeded),
// timer.pid, timer.rc / timer.out (the timer's thaw). A successful thaw removes the whole directory. A generation per freeze attempt keeps an old attempt's timer, still
// sleeping, from ever thawing a newer freeze: it only knows its own generation's token.

/** One argument for sh, single-quoted. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

// Once the freeze is undone for good (the token ours), the timer can do nothing: end its sleep too, if it is still our
// timer (checked by its command line, which names the generation's directory $d: a pid reused since is left alone;
// without ps, it sleeps out).
const STOP_TIMER = String.raw`stop_timer() {
  pid=$(cat "$d/timer.pid" 2>/dev/null) || return 0
  case "$(ps -o args= -p "$pid" 2>/dev/null)" in
    *"dosvob-timer "*" $d") kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null ;;
  esac
  return 0
}
`;

// $1 id, $2 seconds, $3 freeze command, $4 thaw command.
const FREEZE_SCRIPT = String.raw`set -u
${STOP_TIMER}id=$1 secs=$2 freeze=$3 thaw=$4
base="${'$'}{TMPDIR:-/tmp}/dosvob-freeze-$id"
umask 077
mkdir -p "$base" || { echo "DOSVOB-SETUP-FAILED cannot create $base"; exit 0; }
# A retried attempt whose predecessor got as far as frozen: the freeze (and its timer) stand.
if [ -f "$base/current" ]; then
  g=$(cat "$base/current")
  if [ -e "$base/$g/armed" ] && [ -e "$base/$g/frozen" ]; then echo "DOSVOB-FROZEN $g again"; exit 0; fi
fi
# An interrupted attempt may have frozen without saying so: thaw it (once, by its token) before freezing anew.
for t in "$base"/*/armed; do
  [ -e "$t" ] || continue
  d=${'$'}{t%/armed}
  if mv "$t" "$d/claimed-retry" 2>/dev/null; then sh "$d/thaw.sh" >/dev/null 2>&1; stop_timer; fi
done
g=$(date +%s)-$$
d="$base/$g"
mkdir "$d" && printf '%s\n' "$thaw" > "$d/thaw.sh" && : > "$d/armed" && printf '%s\n' "$g" > "$base/current" ||
  { echo "DOSVOB-SETUP-FAILED cannot write $d"; exit 0; }
# The dead-man timer, armed before anything is frozen, in a session of its own so that nothing which ends this SSH
# session (a hang-up, a kill of its process group) ends the timer.
timer='sleep "$1"; if mv "$2/armed" "$2/claimed-timer" 2>/dev/null; then sh "$2/thaw.sh" >"$2/timer.out" 2>&1; echo $? >"$2/timer.rc"; fi'
if command -v setsid >/dev/null 2>&1; then
  setsid sh -c "$timer" dosvob-timer "$secs" "$d" </dev/null >/dev/null 2>&1 &
else
  nohup sh -c "$timer" dosvob-timer "$secs" "$d" </dev/null >/dev/null 2>&1 &
fi
echo $! > "$d/timer.pid"
sh -c "$freeze" </dev/null
rc=$?
if [ "$rc" -ne 0 ]; then
  # A freeze that failed half-way (one of two filesystems) is undone at once, unless the timer already did.
  if mv "$d/armed" "$d/claimed-failed" 2>/dev/null; then sh "$d/thaw.sh" </dev/null; stop_timer; fi
  echo "DOSVOB-FREEZE-FAILED $rc"
  exit 0
fi
if [ ! -e "$d/armed" ]; then echo "DOSVOB-FREEZE-EXPIRED"; exit 0; fi
: > "$d/frozen"
echo "DOSVOB-FROZEN $g"
`;

// $1 id. The timer's own thaw may be running: it is waited for (at most a minute) and its result reported.
const THAW_SCRIPT = String.raw`set -u
${STOP_TIMER}id=$1
base="${'$'}{TMPDIR:-/tmp}/dosvob-freeze-$id"
if [ ! -f "$base/current" ]; then echo "DOSVOB-THAWED none"; exit 0; fi
g=$(cat "$base/current")
d="$base/$g"
run_thaw() {
  sh "$d/thaw.sh" </dev/null
  rc=$?
  if [ "$rc" -ne 0 ]; then
    mv "$d/claimed-dosvob" "$d/armed" 2>/dev/null
    echo "DOSVOB-THAW-FAILED $rc"
    exit 0
  fi
  stop_timer
  rm -rf "$base"
}
# Claimed here; or claimed by an attempt of this thaw that was cut off before it finished (no result recorded).
if mv "$d/armed" "$d/claimed-dosvob" 2>/dev/null || [ -e "$d/claimed-dosvob" ]; then
  run_thaw
  echo "DOSVOB-THAWED dosvob"
  exit 0
fi
if [ -e "$d/claimed-timer" ]; then
  i=0
  while [ ! -e "$d/timer.rc" ] && [ "$i" -lt 60 ]; do sleep 1; i=$((i + 1)); done
  cat "$d/timer.out" 2>/dev/null
  if [ "$(cat "$d/timer.rc" 2>/dev/null)" != 0 ]; then
    : > "$d/claimed-dosvob"
    run_thaw
  fi
  rm -rf "$base"
  echo "DOSVOB-THAWED timer"
  exit 0
fi
rm -rf "$base"
echo "DOSVOB-THAWED none"
`;

export function freezeCommand(id: string, seconds: number, freeze: string, thaw: string): string {
  return [
    'sh',
    '-c',
    shellQuote(FREEZE_SCRIPT),
    'dosvob-freeze',
    id,
    String(seconds),
    shellQuote(freeze),
    shellQuote(thaw),
  ].join(' ');
}

export function thawCommand(id: string): string {
  return ['sh', '-c', shellQuote(THAW_SCRIPT), 'dosvob-thaw', id].join(' ');
}

export type FreezeOutcome =
  | { kind: 'frozen'; generation: string; again: boolean }
  | { kind: 'failed'; exitCode: number }
  | { kind: 'expired' }
  | { kind: 'setup-failed'; detail: string }
  | { kind: 'unknown' };

/** The freeze script's verdict: its last marker line. Everything before it is the freeze command's output. */
export function parseFreezeOutput(stdout: string): FreezeOutcome {
  const lines = stdout.trimEnd().split('\n');
  const last = lines[lines.length - 1] ?? '';
  let m: RegExpExecArray | null;
  if ((m = /^DOSVOB-FROZEN (\S+)( again)?$/.exec(last))) return { kind: 'frozen', generation: m[1]!, again: !!m[2] };
  if ((m = /^DOSVOB-FREEZE-FAILED (\d+)$/.exec(last))) return { kind: 'failed', exitCode: Number(m[1]) };
  if (last === 'DOSVOB-FREEZE-EXPIRED') return { kind: 'expired' };
  if ((m = /^DOSVOB-SETUP-FAILED (.*)$/.exec(last))) return { kind: 'setup-failed', detail: m[1]! };
  return { kind: 'unknown' };
}

export type ThawOutcome =
  { kind: 'thawed'; by: 'dosvob' | 'timer' | 'none' } | { kind: 'failed'; exitCode: number } | { kind: 'unknown' };

export function parseThawOutput(stdout: string): ThawOutcome {
  const lines = stdout.trimEnd().split('\n');
  const last = lines[lines.length - 1] ?? '';
  let m: RegExpExecArray | null;
  if ((m = /^DOSVOB-THAWED (dosvob|timer|none)$/.exec(last))) return { kind: 'thawed', by: m[1] as 'dosvob' };
  if ((m = /^DOSVOB-THAW-FAILED (\d+)$/.exec(last))) return { kind: 'failed', exitCode: Number(m[1]) };
  return { kind: 'unknown' };
}

/** The output without the script's own marker line. */
export function commandOutput(stdout: string, stderr: string): string {
  const lines = stdout.trimEnd().split('\n');
  if (/^DOSVOB-/.test(lines[lines.length - 1] ?? '')) lines.pop();
  return [lines.join('\n'), stderr].filter((s) => s.trim() !== '').join('\n');
}
