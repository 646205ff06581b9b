//! cgroup v2: `io.containerd.cgroups.v2.Metrics` from one cgroup directory,
//! read as the Go cgroups library (v3, used by containerd 1.7/2.x) does, and
//! enabling controllers in the ancestors' `cgroup.subtree_control`.

use std::fs;
use std::io;
use std::path::Path;

use protos::cgroups_v2::{
    CPUStat, HugeTlbStat, IOEntry, IOStat, MemoryEvents, MemoryStat, Metrics, PSIStats, PidsStat, RdmaEntry, RdmaStat,
};
use protos::protobuf::MessageField;

use super::files::{kv, kv_numbers, parse_uint, read, tolerate_missing};
use super::v1::parse_rdma_line;

/// Reads the statistics of the cgroup at `dir`.
pub(super) fn metrics(dir: &Path) -> io::Result<Metrics> {
    let controllers = read(&dir.join("cgroup.controllers"))?;
    let enabled = |c: &str| controllers.split_whitespace().any(|x| x == c);
    let mut m = Metrics::new();

    m.pids = MessageField::some(PidsStat {
        current: value_file(dir, "pids.current"),
        limit: value_file(dir, "pids.max"),
        ..Default::default()
    });

    let mut cpu = CPUStat::new();
    if enabled("cpu") {
        tolerate_missing(read(&dir.join("cpu.stat")).map(|text| {
            for (key, v) in kv_numbers(&text) {
                match key {
                    "usage_usec" => cpu.usage_usec = v,
                    "user_usec" => cpu.user_usec = v,
                    "system_usec" => cpu.system_usec = v,
                    "nr_periods" => cpu.nr_periods = v,
                    "nr_throttled" => cpu.nr_throttled = v,
                    "throttled_usec" => cpu.throttled_usec = v,
                    "nr_bursts" => cpu.nr_bursts = v,
                    "burst_usec" => cpu.burst_usec = v,
                    _ => {}
                }
            }
        }))?;
    }
    cpu.psi = psi(&dir.join("cpu.pressure"));
    m.cpu = MessageField::some(cpu);

    let mut mem = MemoryStat::new();
    if enabled("memory") {
        tolerate_missing(read(&dir.join("memory.stat")).map(|text| fill_memory_stat(&mut mem, &text)))?;
    }
    mem.usage = value_file(dir, "memory.current");
    mem.usage_limit = value_file(dir, "memory.max");
    mem.swap_usage = value_file(dir, "memory.swap.current");
    mem.swap_limit = value_file(dir, "memory.swap.max");
    mem.max_usage = value_file(dir, "memory.peak");
    mem.swap_max_usage = value_file(dir, "memory.swap.peak");
    mem.psi = psi(&dir.join("memory.pressure"));
    m.memory = MessageField::some(mem);

    match read(&dir.join("memory.events")) {
        Ok(text) => m.memory_events = memory_events(&text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }

    m.io = MessageField::some(IOStat {
        usage: fs::read_to_string(dir.join("io.stat"))
            .map(|t| io_entries(&t))
            .unwrap_or_default(),
        psi: psi(&dir.join("io.pressure")),
        ..Default::default()
    });
    m.rdma = MessageField::some(RdmaStat {
        current: rdma_entries(&dir.join("rdma.current")),
        limit: rdma_entries(&dir.join("rdma.max")),
        ..Default::default()
    });
    m.hugetlb = hugetlb(dir);
    Ok(m)
}

/// A single-value file: 0 when missing or unreadable, `u64::MAX` for `max`.
fn value_file(dir: &Path, name: &str) -> u64 {
    let Ok(text) = fs::read_to_string(dir.join(name)) else {
        return 0;
    };
    match text.trim() {
        "max" => u64::MAX,
        s => parse_uint(s).unwrap_or(0),
    }
}

fn fill_memory_stat(mem: &mut MemoryStat, text: &str) {
    for (key, v) in kv_numbers(text) {
        let field = match key {
            "anon" => &mut mem.anon,
            "file" => &mut mem.file,
            "kernel_stack" => &mut mem.kernel_stack,
            "slab" => &mut mem.slab,
            "sock" => &mut mem.sock,
            "shmem" => &mut mem.shmem,
            "file_mapped" => &mut mem.file_mapped,
            "file_dirty" => &mut mem.file_dirty,
            "file_writeback" => &mut mem.file_writeback,
            "anon_thp" => &mut mem.anon_thp,
            "inactive_anon" => &mut mem.inactive_anon,
            "active_anon" => &mut mem.active_anon,
            "inactive_file" => &mut mem.inactive_file,
            "active_file" => &mut mem.active_file,
            "unevictable" => &mut mem.unevictable,
            "slab_reclaimable" => &mut mem.slab_reclaimable,
            "slab_unreclaimable" => &mut mem.slab_unreclaimable,
            "pgfault" => &mut mem.pgfault,
            "pgmajfault" => &mut mem.pgmajfault,
            "workingset_refault" => &mut mem.workingset_refault,
            "workingset_activate" => &mut mem.workingset_activate,
            "workingset_nodereclaim" => &mut mem.workingset_nodereclaim,
            "pgrefill" => &mut mem.pgrefill,
            "pgscan" => &mut mem.pgscan,
            "pgsteal" => &mut mem.pgsteal,
            "pgactivate" => &mut mem.pgactivate,
            "pgdeactivate" => &mut mem.pgdeactivate,
            "pglazyfree" => &mut mem.pglazyfree,
            "pglazyfreed" => &mut mem.pglazyfreed,
            "thp_fault_alloc" => &mut mem.thp_fault_alloc,
            "thp_collapse_alloc" => &mut mem.thp_collapse_alloc,
            _ => continue,
        };
        *field = v;
    }
}

/// `memory.events`; absent when the file has no `key value` line.
fn memory_events(text: &str) -> MessageField<MemoryEvents> {
    let mut ev = MemoryEvents::new();
    let mut any = false;
    for (key, v) in text.lines().filter_map(kv) {
        any = true;
        let v = parse_uint(v).unwrap_or(0);
        match key {
            "low" => ev.low = v,
            "high" => ev.high = v,
            "max" => ev.max = v,
            "oom" => ev.oom = v,
            "oom_kill" => ev.oom_kill = v,
            _ => {}
        }
    }
    if any {
        MessageField::some(ev)
    } else {
        MessageField::none()
    }
}

/// `8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0` lines.
fn io_entries(text: &str) -> Vec<IOEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut parts = line.split(' ');
        let Some((major, minor)) = parts.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            // As the Go library: stop at a malformed device.
            break;
        };
        let mut e = IOEntry {
            major,
            minor,
            ..Default::default()
        };
        for kv in parts {
            let Some((key, value)) = kv.split_once('=') else {
                continue;
            };
            let Ok(v) = value.parse::<u64>() else {
                continue;
            };
            match key {
                "rbytes" => e.rbytes = v,
                "wbytes" => e.wbytes = v,
                "rios" => e.rios = v,
                "wios" => e.wios = v,
                _ => {}
            }
        }
        out.push(e);
    }
    out
}

fn rdma_entries(path: &Path) -> Vec<RdmaEntry> {
    let Ok(text) = fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(parse_rdma_line)
        .map(|(device, hca_handles, hca_objects)| RdmaEntry {
            device: device.to_string(),
            hca_handles,
            hca_objects,
            ..Default::default()
        })
        .collect()
}

/// `hugetlb.<size>.current` / `.max` files, one entry per page size, sorted.
fn hugetlb(dir: &Path) -> Vec<HugeTlbStat> {
    let mut out: Vec<HugeTlbStat> = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix("hugetlb.") else {
            continue;
        };
        let Some((pagesize, kind)) = rest.split_once('.') else {
            continue;
        };
        let value = match kind {
            "current" | "max" => match fs::read_to_string(entry.path()) {
                Ok(t) if t.trim() == "max" => u64::MAX,
                Ok(t) => match t.trim().parse::<u64>() {
                    Ok(v) => v,
                    Err(_) => continue,
                },
                Err(_) => continue,
            },
            _ => continue,
        };
        let i = match out.iter().position(|h| h.pagesize == pagesize) {
            Some(i) => i,
            None => {
                out.push(HugeTlbStat {
                    pagesize: pagesize.to_string(),
                    ..Default::default()
                });
                out.len() - 1
            }
        };
        if kind == "max" {
            out[i].max = value;
        } else {
            out[i].current = value;
        }
    }
    out.sort_by(|a, b| a.pagesize.cmp(&b.pagesize));
    out
}

/// `some avg10=0.00 avg60=0.00 avg300=0.00 total=0` (and `full ...`);
/// absent when the file can't be read.
fn psi(path: &Path) -> MessageField<PSIStats> {
    let Ok(text) = fs::read_to_string(path) else {
        return MessageField::none();
    };
    let mut stats = PSIStats::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let slot = match fields.next() {
            Some("some") => &mut stats.some,
            Some("full") => &mut stats.full,
            _ => continue,
        };
        let data = slot.mut_or_insert_default();
        for kv in fields {
            let Some((key, value)) = kv.split_once('=') else {
                continue;
            };
            let avg = |v: &str| v.parse::<f64>().ok();
            match key {
                "avg10" => data.avg10 = avg(value).unwrap_or(data.avg10),
                "avg60" => data.avg60 = avg(value).unwrap_or(data.avg60),
                "avg300" => data.avg300 = avg(value).unwrap_or(data.avg300),
                "total" => data.total = value.parse().unwrap_or(data.total),
                _ => {}
            }
        }
    }
    MessageField::some(stats)
}

/// Enables every controller of the hierarchy (`<root>/cgroup.controllers`) in
/// `cgroup.subtree_control` of `root` and of each ancestor of `cgroup_dir`
/// below it, outermost first (not in `cgroup_dir` itself), as the Go shim does
/// before watching a v2 cgroup. Every level is tried; as in Go, the result is
/// that of the deepest write (a failure higher up is harmless once the
/// controllers are on).
pub fn enable_v2_controllers(root: &Path, cgroup_dir: &Path) -> io::Result<()> {
    if !cgroup_dir.starts_with(root) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not under {}", cgroup_dir.display(), root.display()),
        ));
    }
    let controllers = read(&root.join("cgroup.controllers"))?;
    let line = controllers
        .split_whitespace()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    if line.is_empty() {
        return Ok(());
    }
    let mut levels: Vec<&Path> = cgroup_dir
        .ancestors()
        .skip(1)
        .take_while(|a| a.starts_with(root))
        .collect();
    levels.reverse();
    let mut result = Ok(());
    for dir in levels {
        let file = dir.join("cgroup.subtree_control");
        result = fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .and_then(|mut f| io::Write::write_all(&mut f, line.as_bytes()))
            .map_err(|e| io::Error::new(e.kind(), format!("enable {line} in {}: {e}", file.display())));
    }
    result
}

#[cfg(test)]
mod tests;
