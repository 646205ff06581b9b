//! `-info` (containerd 2.x): describe this runtime as a `RuntimeInfo`.

use std::io::{self, Read, Write};

use protobuf::{Message, MessageField};
use protos::introspection::{RuntimeInfo, RuntimeVersion};
use protos::Any;
use runc_wrapper::Runc;

/// Builds the RuntimeInfo for the options `Any` read from stdin (possibly empty).
pub fn runtime_info(stdin: &[u8]) -> Result<RuntimeInfo, String> {
    let options = if stdin.is_empty() {
        None
    } else {
        Some(Any::parse_from_bytes(stdin).map_err(|e| format!("cannot decode options: {e}"))?)
    };
    let opts = crate::options::decode(options.as_ref()).map_err(|e| e.to_string())?;
    let mut info = RuntimeInfo::new();
    info.name = "io.containerd.runc.v2".to_string();
    let mut version = RuntimeVersion::new();
    version.version = env!("CARGO_PKG_VERSION").to_string();
    version.revision = "rust".to_string();
    info.version = MessageField::some(version);
    if let Some(o) = options {
        info.options = MessageField::some(o);
    }
    let runc = Runc::new(crate::options::runc_binary(&opts.binary_name));
    match runc.features().output() {
        Ok(json) => {
            info.features = MessageField::some(protos::any::pack_bytes(protos::any::OCI_FEATURES, json));
        }
        Err(e) => eprintln!("runc features unavailable: {e}"),
    }
    Ok(info)
}

pub fn main() -> i32 {
    let mut stdin = Vec::new();
    if let Err(e) = io::stdin().read_to_end(&mut stdin) {
        eprintln!("read stdin: {e}");
        return 1;
    }
    match runtime_info(&stdin).and_then(|i| i.write_to_bytes().map_err(|e| e.to_string())) {
        Ok(bytes) => {
            let _ = io::stdout().write_all(&bytes);
            0
        }
        Err(e) => {
            eprintln!("containerd-shim-runc-v2 -info: {e}");
            1
        }
    }
}
