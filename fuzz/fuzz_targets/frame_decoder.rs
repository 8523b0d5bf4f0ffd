//! Any byte stream into the frame decoder: it must never panic, never
//! allocate past its cap, and every frame it returns respects the cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rpc::frame::{read_frame, MAX_HANDSHAKE_FRAME};

fuzz_target!(|data: &[u8]| {
    smol::block_on(async {
        let mut input = data;
        while let Ok(frame) = read_frame(&mut input, MAX_HANDSHAKE_FRAME).await {
            assert!(!frame.is_empty() && frame.len() <= MAX_HANDSHAKE_FRAME);
        }
    });
});
