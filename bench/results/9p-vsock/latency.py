#!/usr/bin/env python3
"""Splits avpfs-9p's round trips into server, relay and guest time from the
straces latency.sh writes (avpfs.strace, vsock.strace in DIR).

avpfs's connection thread reads a 4-byte size, the rest of the frame, then
writes the reply. vhost-device-vsock reads 8 bytes from a kick eventfd
(the guest sent something), moves data between the virtqueues and the
unix socket, and writes 8 bytes to a call eventfd (an interrupt for the
guest). For each request, in time order:
  guest->relay  : relay's kick read returns              (start of the leg)
  relay fwd     : relay's data write to avpfs ends        - kick read end
  to server     : avpfs's size read returns               - relay write end
  server        : avpfs starts writing the reply          - size read end
  to relay      : relay's read of the reply returns       - avpfs write end
  relay signal  : relay starts its call-eventfd write     - reply read end
  guest         : next kick read returns                  - call write end
(strace stops each traced syscall: every figure is inflated by tracing.)
"""
import re
import statistics
import sys
from collections import defaultdict

LINE = re.compile(r'^(\d+)\s+(\d+\.\d+)\s+(.*)$')
T9 = {6: 'Tstatfs', 8: 'Tlopen', 12: 'Tlopen', 14: 'Tlcreate', 16: 'Tsymlink', 18: 'Tmknod', 20: 'Trename',
      22: 'Treadlink', 24: 'Tgetattr', 26: 'Tsetattr', 30: 'Txattrwalk', 32: 'Txattrcreate', 40: 'Treaddir',
      50: 'Tfsync', 52: 'Tlock', 54: 'Tgetlock', 70: 'Tlink', 72: 'Tmkdir', 74: 'Trenameat', 76: 'Tunlinkat',
      100: 'Tversion', 104: 'Tattach', 108: 'Tflush', 110: 'Twalk', 116: 'Tread', 118: 'Twrite', 120: 'Tclunk',
      122: 'Tremove'}


def parse(path):
    """Syscalls as dicts: pid, name, args (text), ret, start, end."""
    out, pending = [], {}
    for raw in open(path, errors='replace'):
        m = LINE.match(raw.rstrip('\n'))
        if not m:
            continue
        pid, ts, rest = int(m.group(1)), float(m.group(2)), m.group(3)
        if rest.endswith('<unfinished ...>'):
            name = rest.split('(', 1)[0]
            pending[(pid, name)] = (ts, rest[len(name) + 1:-len('<unfinished ...>')])
            continue
        r = re.match(r'^<\.\.\. (\w+) resumed>(.*)$', rest)
        if r:
            name = r.group(1)
            start, args = pending.pop((pid, name), (ts, ''))
            body = args + r.group(2)
            end = ts
        else:
            name = rest.split('(', 1)[0]
            body = rest[len(name) + 1:]
            start = ts
            end = None
        d = re.search(r'\s=\s(-?\d+|\?)[^<]*(?:<(\d+\.\d+)>)?\s*$', body)
        if not d:
            continue
        ret = int(d.group(1)) if d.group(1) != '?' else -1
        dur = float(d.group(2)) if d.group(2) else 0.0
        if end is None:
            end = start + dur
        out.append({'pid': pid, 'name': name, 'args': body, 'ret': ret, 'start': start, 'end': end})
    return out


def first_byte(args):
    m = re.search(r'"\\x([0-9a-f]{2})', args)
    return int(m.group(1), 16) if m else None


def count_arg(args):
    m = re.search(r'"(?:\.\.\.)?,\s*(\d+)', args)
    return int(m.group(1)) if m else None


def main(d):
    a = parse(f'{d}/avpfs.strace')
    v = parse(f'{d}/vsock.strace')
    reads = ('read', 'recvfrom', 'recvmsg')
    writes = ('write', 'sendto', 'sendmsg')
    # avpfs: requests are (size read, rest read, reply write) on one thread.
    reqs = []
    calls = [c for c in a if c['name'] in reads + writes and c['ret'] >= 0]
    for i, c in enumerate(calls):
        if c['name'] in reads and count_arg(c['args']) == 4 and c['ret'] == 4:
            rest = next((x for x in calls[i + 1:i + 3] if x['pid'] == c['pid'] and x['name'] in reads), None)
            reply = next((x for x in calls[i + 1:i + 4] if x['pid'] == c['pid'] and x['name'] in writes), None)
            if rest and reply:
                reqs.append({'arrive': c['end'], 'type': T9.get(first_byte(rest['args']), str(first_byte(rest['args']))),
                             'reply_start': reply['start'], 'reply_end': reply['end']})
    kicks = [c['end'] for c in v if c['name'] in reads and c['ret'] == 8]
    sigs = [c for c in v if c['name'] in writes and c['ret'] == 8]
    dreads = [c['end'] for c in v if c['name'] in reads and c['ret'] > 0 and c['ret'] != 8]
    dwrites = [c['end'] for c in v if c['name'] in writes and c['ret'] > 0 and c['ret'] != 8]

    def after(seq, t):
        lo, hi = 0, len(seq)
        while lo < hi:
            mid = (lo + hi) // 2
            if seq[mid] < t:
                lo = mid + 1
            else:
                hi = mid
        return seq[lo] if lo < len(seq) else None

    sig_starts = [s['start'] for s in sigs]
    sig_ends = {s['start']: s['end'] for s in sigs}
    dwrite_starts = [c['start'] for c in v if c['name'] in writes and c['ret'] > 0 and c['ret'] != 8]
    dwrite_end = {c['start']: c['end'] for c in v if c['name'] in writes and c['ret'] > 0 and c['ret'] != 8}
    legs = defaultdict(list)
    by_type = defaultdict(list)
    for i, q in enumerate(reqs[:-1]):
        nxt = reqs[i + 1]
        server = q['reply_start'] - q['arrive']
        by_type[q['type']].append(server)
        legs['round trip (request read -> next request read)'].append(nxt['arrive'] - q['arrive'])
        legs['server (avpfs: request read -> reply write)'].append(server)
        legs['outside avpfs (reply written -> next request read)'].append(nxt['arrive'] - q['reply_end'])
        rr = after(dreads, q['reply_end'])
        if rr is None or rr > nxt['arrive']:
            continue
        ss = after(sig_starts, rr)
        if ss is None or ss > nxt['arrive']:
            continue
        fw = after(dwrite_starts, sig_ends[ss])
        if fw is None or dwrite_end[fw] > nxt['arrive']:
            continue
        legs['  relay reads the reply (avpfs write end -> relay read end)'].append(rr - q['reply_end'])
        legs['  relay signals the guest (reply read -> call eventfd write)'].append(ss - rr)
        legs['  guest, and relay TX (interrupt -> relay writes next request)'].append(fw - sig_ends[ss])
        legs['  avpfs wakes (relay write end -> avpfs read end)'].append(nxt['arrive'] - dwrite_end[fw])
    print(f'{len(reqs)} requests; µs, median (p10-p90) per request')
    for name, xs in legs.items():
        xs = sorted(xs)
        if xs:
            p = lambda f: xs[min(len(xs) - 1, int(f * len(xs)))] * 1e6
            print(f'{name:62} n={len(xs):5} {statistics.median(xs) * 1e6:9.1f} ({p(0.1):.1f}-{p(0.9):.1f})')
    print('server time by request type: n, median µs')
    for t, xs in sorted(by_type.items(), key=lambda kv: -len(kv[1])):
        print(f'  {t:12} {len(xs):6} {statistics.median(xs) * 1e6:9.1f}')
    print('relay syscalls:', dict(sorted(defaultdict(int, {n: sum(1 for c in v if c["name"] == n) for n in set(c["name"] for c in v)}).items())))


if __name__ == '__main__':
    main(sys.argv[1] if len(sys.argv) > 1 else '/tmp/p9lat')
