//! Finding the tracepoints: their ids and field offsets, read from tracefs.
//!
//! perf opens a tracepoint by the id tracefs gives it
//! (`events/<group>/<name>/id`), and its raw entries are laid out as the
//! `format` file beside it says. Both are read once, at start. tracefs is
//! looked for where it is mounted (`/proc/self/mountinfo`), then at its
//! usual places; where it is mounted nowhere (this is common: nothing needs
//! it until someone traces) and we may mount, it is mounted in a thread of
//! its own with a private mount namespace, read, and gone with that thread:
//! the host's mounts are never touched.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use super::Unavailable;

/// Where tracefs usually is when mounted, and where it is mounted privately.
const USUAL: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// A tracepoint's id and the fields of its raw entry.
#[derive(Debug, Clone)]
pub struct Format {
    /// The id that perf_event_open takes (and `common_type` holds).
    pub id: u64,
    /// Field name to (offset, size) in the raw entry.
    fields: HashMap<String, (usize, usize)>,
}

impl Format {
    /// Parses a `format` file; `None` when it names no field.
    pub fn parse(id: u64, text: &str) -> Option<Format> {
        let mut fields = HashMap::new();
        for line in text.lines() {
            let mut name = None;
            let (mut offset, mut size) = (None, None);
            for part in line.trim().split(';') {
                let part = part.trim();
                if let Some(declaration) = part.strip_prefix("field:") {
                    // `__u8 saddr[4]`, `const void * skaddr`: the last word,
                    // without its array bounds.
                    name = declaration
                        .rsplit([' ', '*'])
                        .next()
                        .map(|n| n.split('[').next().unwrap_or(n).to_owned());
                } else if let Some(value) = part.strip_prefix("offset:") {
                    offset = value.parse().ok();
                } else if let Some(value) = part.strip_prefix("size:") {
                    size = value.parse().ok();
                }
            }
            if let (Some(name), Some(offset), Some(size)) = (name, offset, size) {
                fields.insert(name, (offset, size));
            }
        }
        (!fields.is_empty()).then_some(Format { id, fields })
    }

    /// Whether the entry has every field in `names`.
    pub fn has(&self, names: &[&str]) -> bool {
        names.iter().all(|n| self.fields.contains_key(*n))
    }

    /// Field `name` of `raw`, as an unsigned number of its size (1, 2, 4 or
    /// 8 bytes, native order); `None` when absent or past the entry's end.
    pub fn get(&self, raw: &[u8], name: &str) -> Option<u64> {
        let &(offset, size) = self.fields.get(name)?;
        let bytes = raw.get(offset..offset.checked_add(size)?)?;
        Some(match size {
            1 => u64::from(bytes[0]),
            2 => u64::from(u16::from_ne_bytes(bytes.try_into().ok()?)),
            4 => u64::from(u32::from_ne_bytes(bytes.try_into().ok()?)),
            8 => u64::from_ne_bytes(bytes.try_into().ok()?),
            _ => return None,
        })
    }
}

/// The tracepoints sockwatch opens, as found.
#[derive(Debug, Clone)]
pub struct Found {
    /// Where they were read (a private mount is named as such).
    pub place: String,
    /// `sock:inet_sock_set_state`.
    pub set_state: Format,
    /// `syscalls:sys_enter_bind` and `sys_exit_bind`, when asked for.
    pub bind: Option<(Format, Format)>,
}

/// The tracepoints' ids and formats: from a mounted tracefs, else from a
/// private mount. With `bind`, the bind syscall's pair too.
pub fn discover(bind: bool) -> Result<Found, Unavailable> {
    let mut first_refusal: Option<Unavailable> = None;
    for dir in candidates() {
        match read_events(&dir, bind) {
            Ok(found) => return Ok(found),
            // Not mounted here (an empty mount point) or not this kernel's:
            // look further.
            Err(e) if e.cause.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => {
                first_refusal.get_or_insert(e);
            }
        }
    }
    match read_privately(bind) {
        Ok(found) => Ok(found),
        // A mounted tracefs we may not read says more than a mount we may
        // not make.
        Err(e) => Err(first_refusal.unwrap_or(e)),
    }
}

/// Mounted tracefs (or debugfs's `tracing`) from mountinfo, then the usual
/// places, without repeats.
fn candidates() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|text| mounted(&text))
        .unwrap_or_default();
    for usual in USUAL {
        if !dirs.iter().any(|d| d == Path::new(usual)) {
            dirs.push(PathBuf::from(usual));
        }
    }
    dirs
}

/// The tracefs directories that `mountinfo` text lists.
fn mounted(mountinfo: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for line in mountinfo.lines() {
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let (Some(point), Some(fstype)) = (before.split(' ').nth(4), after.split(' ').next())
        else {
            continue;
        };
        let point = unescape(point);
        match fstype {
            "tracefs" => dirs.push(PathBuf::from(point)),
            "debugfs" => dirs.push(Path::new(&point).join("tracing")),
            _ => {}
        }
    }
    dirs
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |v, b| v * 8 + u32::from(b - b'0'));
            out.push(value as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn read_event(dir: &Path, event: &str, fields: &[&str]) -> Result<Format, Unavailable> {
    let base = dir.join("events").join(event);
    let step = |what: &str| format!("tracefs {}/{what}", base.display());
    let id =
        std::fs::read_to_string(base.join("id")).map_err(|e| Unavailable::new(step("id"), e))?;
    let id: u64 = id
        .trim()
        .parse()
        .map_err(|_| Unavailable::new(step("id"), io::Error::from_raw_os_error(libc::EINVAL)))?;
    let text = std::fs::read_to_string(base.join("format"))
        .map_err(|e| Unavailable::new(step("format"), e))?;
    Format::parse(id, &text)
        .filter(|f| f.has(fields))
        .ok_or_else(|| Unavailable::new(step("format"), io::Error::from_raw_os_error(libc::EINVAL)))
}

fn read_events(dir: &Path, bind: bool) -> Result<Found, Unavailable> {
    let common = ["common_type", "common_pid"];
    let set_state = read_event(
        dir,
        "sock/inet_sock_set_state",
        &[&common[..], &["oldstate", "newstate", "sport", "family"]].concat(),
    )?;
    let bind = if bind {
        Some((
            read_event(
                dir,
                "syscalls/sys_enter_bind",
                &[&common[..], &["addrlen"]].concat(),
            )?,
            read_event(
                dir,
                "syscalls/sys_exit_bind",
                &[&common[..], &["ret"]].concat(),
            )?,
        ))
    } else {
        None
    };
    Ok(Found {
        place: dir.display().to_string(),
        set_state,
        bind,
    })
}

/// Mounts tracefs in a thread with a mount namespace of its own and reads
/// the events there.
fn read_privately(bind: bool) -> Result<Found, Unavailable> {
    let Some(at) = USUAL.iter().map(Path::new).find(|p| p.is_dir()) else {
        return Err(Unavailable::new(
            "tracefs is not mounted, and there is no directory to mount it on".into(),
            io::Error::from_raw_os_error(libc::ENOENT),
        ));
    };
    let at = at.to_path_buf();
    let reader = std::thread::Builder::new()
        .name("sockwatch-tracefs".into())
        .spawn(move || {
            crate::sys::mount_tracefs_privately(&at).map_err(|e| {
                Unavailable::new(
                    format!(
                        "tracefs is not mounted; mounting it privately on {}",
                        at.display()
                    ),
                    e,
                )
            })?;
            let mut found = read_events(&at, bind)?;
            found.place = format!("a private mount of tracefs on {}", at.display());
            Ok(found)
        })
        .map_err(|e| Unavailable::new("tracefs: starting a thread to mount it".into(), e))?;
    reader.join().unwrap_or_else(|_| {
        Err(Unavailable::new(
            "tracefs: the thread mounting it".into(),
            io::Error::other("panicked"),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::records::tests::SET_STATE_FORMAT;

    #[test]
    fn parses_a_format_file() {
        let format = Format::parse(1581, SET_STATE_FORMAT).unwrap();
        assert!(format.has(&[
            "common_type",
            "common_pid",
            "oldstate",
            "newstate",
            "sport",
            "family"
        ]));
        assert!(
            format.has(&["saddr", "skaddr"]),
            "array bounds and pointers"
        );
        assert!(!format.has(&["addrlen"]));
        let mut raw = vec![0u8; 72];
        raw[24..26].copy_from_slice(&8080u16.to_ne_bytes());
        raw[20..24].copy_from_slice(&10u32.to_ne_bytes());
        assert_eq!(format.get(&raw, "sport"), Some(8080));
        assert_eq!(format.get(&raw, "newstate"), Some(10));
        assert_eq!(format.get(&raw[..25], "sport"), None, "past the end");
        assert!(Format::parse(1, "name: x\nID: 1\n").is_none());
    }

    #[test]
    fn finds_tracefs_in_mountinfo() {
        let text = "22 1 0:21 / /sys rw - sysfs sysfs rw\n\
                    40 22 0:12 / /sys/kernel/tracing rw,nosuid - tracefs nodev rw\n\
                    41 22 0:7 / /sys/kernel/debug rw - debugfs debugfs rw\n\
                    42 1 0:13 / /mnt/my\\040trace rw - tracefs nodev rw\n";
        assert_eq!(
            mounted(text),
            [
                PathBuf::from("/sys/kernel/tracing"),
                PathBuf::from("/sys/kernel/debug/tracing"),
                PathBuf::from("/mnt/my trace"),
            ]
        );
    }
}
