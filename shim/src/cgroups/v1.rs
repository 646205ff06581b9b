//! cgroup v1 statistics: `io.containerd.cgroups.v1.Metrics` from the files the
//! Go cgroups library reads, controller by controller. A controller whose
//! directory or file is missing is skipped (the Go shim's `IgnoreNotExist`).

use std::fs;
use std::io;
use std::path::Path;

use protos::cgroups_v1::{
    BlkIOEntry, BlkIOStat, HugetlbStat, MemoryEntry, MemoryOomControl, MemoryStat, Metrics, PidsStat, RdmaEntry,
    RdmaStat,
};
use protos::protobuf::MessageField;

use super::files::{invalid, kv_numbers, parse_uint, read, read_u64, tolerate_missing};
use super::locate::Subsystem;

/// USER_HZ, the unit of `cpuacct.stat` (100 on every Linux architecture).
const CLOCK_TICKS: u64 = 100;
const NANOS_PER_TICK: u64 = 1_000_000_000 / CLOCK_TICKS;

/// Reads the statistics of `subsystems`; `partitions` is `/proc/partitions`
/// (for blkio device names).
pub(super) fn metrics(subsystems: &[Subsystem], partitions: &Path) -> io::Result<Metrics> {
    let dir = |name: &str| subsystems.iter().find(|s| s.name == name).map(|s| s.dir.as_path());
    let mut m = Metrics::new();
    // Always present, as in the Go library: cpu and cpuacct both fill it.
    let cpu = m.cpu.mut_or_insert_default();
    cpu.usage.mut_or_insert_default();
    cpu.throttling.mut_or_insert_default();

    type Reader = fn(&Path, &mut Metrics) -> io::Result<()>;
    let readers: [(&str, Reader); 6] = [
        ("pids", pids),
        ("cpu", cpu_throttling),
        ("cpuacct", cpuacct),
        ("memory", memory),
        ("hugetlb", hugetlb),
        ("rdma", rdma),
    ];
    for (name, read_into) in readers {
        if let Some(d) = dir(name) {
            tolerate_missing(read_into(d, &mut m))?;
        }
    }
    if let Some(d) = dir("blkio") {
        tolerate_missing(blkio(d, partitions, &mut m))?;
    }
    Ok(m)
}

fn pids(dir: &Path, m: &mut Metrics) -> io::Result<()> {
    let current = read_u64(&dir.join("pids.current"))?;
    let path = dir.join("pids.max");
    let max = read(&path)?;
    let limit = match max.trim() {
        "max" => 0,
        s => parse_uint(s).ok_or_else(|| invalid(&path, "number"))?,
    };
    m.pids = MessageField::some(PidsStat {
        current,
        limit,
        ..Default::default()
    });
    Ok(())
}

fn cpu_throttling(dir: &Path, m: &mut Metrics) -> io::Result<()> {
    let text = read(&dir.join("cpu.stat"))?;
    let t = m.cpu.mut_or_insert_default().throttling.mut_or_insert_default();
    for (key, v) in kv_numbers(&text) {
        match key {
            "nr_periods" => t.periods = v,
            "nr_throttled" => t.throttled_periods = v,
            "throttled_time" => t.throttled_time = v,
            _ => {}
        }
    }
    Ok(())
}

fn cpuacct(dir: &Path, m: &mut Metrics) -> io::Result<()> {
    let stat = read(&dir.join("cpuacct.stat"))?;
    let (mut user, mut system) = (0, 0);
    for (key, v) in kv_numbers(&stat) {
        match key {
            "user" => user = v,
            "system" => system = v,
            _ => {}
        }
    }
    let total = read_u64(&dir.join("cpuacct.usage"))?;
    let path = dir.join("cpuacct.usage_percpu");
    let per_cpu = read(&path)?
        .split_whitespace()
        .map(|v| v.parse::<u64>().map_err(|_| invalid(&path, "number")))
        .collect::<io::Result<Vec<u64>>>()?;
    let usage = m.cpu.mut_or_insert_default().usage.mut_or_insert_default();
    usage.total = total;
    usage.user = user.wrapping_mul(NANOS_PER_TICK);
    usage.kernel = system.wrapping_mul(NANOS_PER_TICK);
    usage.per_cpu = per_cpu;
    Ok(())
}

fn memory(dir: &Path, m: &mut Metrics) -> io::Result<()> {
    let stat = read(&dir.join("memory.stat"))?;
    let mem = m.memory.mut_or_insert_default();
    fill_memory_stat(mem, &stat);

    // Unlike the Go library (which stops at the first missing file, so a host
    // without swap accounting reports no kmem either), each file is optional.
    match read(&dir.join("memory.oom_control")) {
        Ok(text) => {
            let mut oom = MemoryOomControl::new();
            for (key, v) in kv_numbers(&text) {
                match key {
                    "oom_kill_disable" => oom.oom_kill_disable = v,
                    "under_oom" => oom.under_oom = v,
                    "oom_kill" => oom.oom_kill = v,
                    _ => {}
                }
            }
            m.memory_oom_control = MessageField::some(oom);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }

    let mem = m.memory.mut_or_insert_default();
    let entries: [(&str, &mut MessageField<MemoryEntry>); 4] = [
        ("memory.", &mut mem.usage),
        ("memory.memsw.", &mut mem.swap),
        ("memory.kmem.", &mut mem.kernel),
        ("memory.kmem.tcp.", &mut mem.kernel_tcp),
    ];
    for (prefix, field) in entries {
        let entry = field.mut_or_insert_default();
        let values: [(&str, &mut u64); 4] = [
            ("usage_in_bytes", &mut entry.usage),
            ("max_usage_in_bytes", &mut entry.max),
            ("failcnt", &mut entry.failcnt),
            ("limit_in_bytes", &mut entry.limit),
        ];
        for (name, value) in values {
            match read_u64(&dir.join(format!("{prefix}{name}"))) {
                Ok(v) => *value = v,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

fn fill_memory_stat(mem: &mut MemoryStat, text: &str) {
    for (key, v) in kv_numbers(text) {
        let field = match key {
            "cache" => &mut mem.cache,
            "rss" => &mut mem.rss,
            "rss_huge" => &mut mem.rss_huge,
            "mapped_file" => &mut mem.mapped_file,
            "dirty" => &mut mem.dirty,
            "writeback" => &mut mem.writeback,
            "pgpgin" => &mut mem.pg_pg_in,
            "pgpgout" => &mut mem.pg_pg_out,
            "pgfault" => &mut mem.pg_fault,
            "pgmajfault" => &mut mem.pg_maj_fault,
            "inactive_anon" => &mut mem.inactive_anon,
            "active_anon" => &mut mem.active_anon,
            "inactive_file" => &mut mem.inactive_file,
            "active_file" => &mut mem.active_file,
            "unevictable" => &mut mem.unevictable,
            "hierarchical_memory_limit" => &mut mem.hierarchical_memory_limit,
            "hierarchical_memsw_limit" => &mut mem.hierarchical_swap_limit,
            "total_cache" => &mut mem.total_cache,
            "total_rss" => &mut mem.total_rss,
            "total_rss_huge" => &mut mem.total_rss_huge,
            "total_mapped_file" => &mut mem.total_mapped_file,
            "total_dirty" => &mut mem.total_dirty,
            "total_writeback" => &mut mem.total_writeback,
            "total_pgpgin" => &mut mem.total_pg_pg_in,
            "total_pgpgout" => &mut mem.total_pg_pg_out,
            "total_pgfault" => &mut mem.total_pg_fault,
            "total_pgmajfault" => &mut mem.total_pg_maj_fault,
            "total_inactive_anon" => &mut mem.total_inactive_anon,
            "total_active_anon" => &mut mem.total_active_anon,
            "total_inactive_file" => &mut mem.total_inactive_file,
            "total_active_file" => &mut mem.total_active_file,
            "total_unevictable" => &mut mem.total_unevictable,
            _ => continue,
        };
        *field = v;
    }
}

/// The CFQ/BFQ `*_recursive` files when the kernel has them and they hold
/// entries, else the throttle counters (what newer kernels account).
fn blkio(dir: &Path, partitions: &Path, m: &mut Metrics) -> io::Result<()> {
    let b = m.blkio.mut_or_insert_default();
    let mut found = 0;
    if dir.join("blkio.io_serviced_recursive").symlink_metadata().is_ok() {
        let files: [(&str, &mut Vec<BlkIOEntry>); 8] = [
            ("sectors_recursive", &mut b.sectors_recursive),
            ("io_service_bytes_recursive", &mut b.io_service_bytes_recursive),
            ("io_serviced_recursive", &mut b.io_serviced_recursive),
            ("io_queued_recursive", &mut b.io_queued_recursive),
            ("io_service_time_recursive", &mut b.io_service_time_recursive),
            ("io_wait_time_recursive", &mut b.io_wait_time_recursive),
            ("io_merged_recursive", &mut b.io_merged_recursive),
            ("time_recursive", &mut b.io_time_recursive),
        ];
        for (name, entries) in files {
            read_blkio_entries(&dir.join(format!("blkio.{name}")), entries)?;
            found += entries.len();
        }
    }
    if found == 0 {
        read_blkio_entries(&dir.join("blkio.throttle.io_serviced"), &mut b.io_serviced_recursive)?;
        read_blkio_entries(
            &dir.join("blkio.throttle.io_service_bytes"),
            &mut b.io_service_bytes_recursive,
        )?;
    }
    name_devices(b, partitions)
}

/// `8:0 Read 4096` lines (or `8:0 4096` without an operation); the final
/// `Total N` line is skipped.
fn read_blkio_entries(path: &Path, entries: &mut Vec<BlkIOEntry>) -> io::Result<()> {
    let text = read(path)?;
    for line in text.lines() {
        let fields: Vec<&str> = line.split([' ', ':']).filter(|f| !f.is_empty()).collect();
        if fields.len() < 3 {
            if fields.len() == 2 && fields[0] == "Total" || fields.is_empty() {
                continue;
            }
            return Err(invalid(path, "line"));
        }
        let num = |s: &str| s.parse::<u64>().map_err(|_| invalid(path, "number"));
        let (op, value) = if fields.len() == 4 {
            (fields[2], fields[3])
        } else {
            ("", fields[2])
        };
        entries.push(BlkIOEntry {
            op: op.to_string(),
            major: num(fields[0])?,
            minor: num(fields[1])?,
            value: num(value)?,
            ..Default::default()
        });
    }
    Ok(())
}

/// Fills `device` (`/dev/<name>`) from `/proc/partitions`.
fn name_devices(b: &mut BlkIOStat, partitions: &Path) -> io::Result<()> {
    let lists = [
        &mut b.io_service_bytes_recursive,
        &mut b.io_serviced_recursive,
        &mut b.io_queued_recursive,
        &mut b.io_service_time_recursive,
        &mut b.io_wait_time_recursive,
        &mut b.io_merged_recursive,
        &mut b.io_time_recursive,
        &mut b.sectors_recursive,
    ];
    if lists.iter().all(|l| l.is_empty()) {
        return Ok(());
    }
    let text = match fs::read_to_string(partitions) {
        Ok(t) => t,
        // Names are cosmetic: without the table the numbers still stand.
        Err(_) => return Ok(()),
    };
    // `major minor  #blocks  name`, a blank line, then one line per device;
    // the first line for a major:minor wins.
    let devices: Vec<(u64, u64, &str)> = text
        .lines()
        .skip(2)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.first()?.parse().ok()?, f.get(1)?.parse().ok()?, *f.get(3)?))
        })
        .collect();
    for list in lists {
        for e in list.iter_mut() {
            if let Some((_, _, name)) = devices.iter().find(|(ma, mi, _)| *ma == e.major && *mi == e.minor) {
                e.device = format!("/dev/{name}");
            }
        }
    }
    Ok(())
}

/// One entry per page size with files in the cgroup (`hugetlb.2MB.*`), in
/// name order (the Go library lists /sys/kernel/mm/hugepages, same sizes).
fn hugetlb(dir: &Path, m: &mut Metrics) -> io::Result<()> {
    let mut sizes: Vec<String> = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(size) = name
            .strip_prefix("hugetlb.")
            .and_then(|n| n.strip_suffix(".usage_in_bytes"))
            .filter(|s| !s.contains('.'))
        {
            sizes.push(size.to_string());
        }
    }
    sizes.sort();
    for pagesize in sizes {
        let value = |what: &str| read_u64(&dir.join(format!("hugetlb.{pagesize}.{what}")));
        let stat = HugetlbStat {
            usage: value("usage_in_bytes")?,
            max: value("max_usage_in_bytes")?,
            failcnt: value("failcnt")?,
            pagesize,
            ..Default::default()
        };
        m.hugetlb.push(stat);
    }
    Ok(())
}

fn rdma(dir: &Path, m: &mut Metrics) -> io::Result<()> {
    let current = read(&dir.join("rdma.current"))?;
    let max = read(&dir.join("rdma.max"))?;
    // A device that went away between the two reads: no statistics.
    if current.split('\n').count() != max.split('\n').count() {
        return Ok(());
    }
    m.rdma = MessageField::some(RdmaStat {
        current: rdma_entries(&current),
        limit: rdma_entries(&max),
        ..Default::default()
    });
    Ok(())
}

/// `mlx4_0 hca_handle=2 hca_object=max` lines; `max` is `u32::MAX`.
/// Shared with v2, whose entries have the same shape.
pub(super) fn parse_rdma_line(line: &str) -> Option<(&str, u32, u32)> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let [device, a, b] = f[..] else {
        return None;
    };
    let (mut handles, mut objects) = (0, 0);
    for kv in [a, b] {
        let Some((key, value)) = kv.split_once('=') else {
            continue;
        };
        let v = match value {
            "max" => u32::MAX,
            v => match parse_uint(v).and_then(|v| u32::try_from(v).ok()) {
                Some(v) => v,
                None => continue,
            },
        };
        match key {
            "hca_handle" => handles = v,
            "hca_object" => objects = v,
            _ => {}
        }
    }
    Some((device, handles, objects))
}

fn rdma_entries(text: &str) -> Vec<RdmaEntry> {
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

#[cfg(test)]
mod tests;
