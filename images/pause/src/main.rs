//! The pause program: PID 1 of every pod sandbox, holding the pod's namespaces open.
//!
//! It does nothing but wait for signals: SIGCHLD reaps every exited child (processes orphaned in
//! the pod's PID namespace are re-parented to it), SIGTERM and SIGINT make it exit 0. Signals are
//! blocked and taken synchronously with `sigwaitinfo`, so no code runs in a signal handler; a
//! blocked signal also reaches PID 1 of a namespace, which drops signals left at their default
//! action. It uses no Rust std (only libc), is linked statically and stays small.
#![no_std]
#![no_main]

use core::ptr;

const VERSION: &[u8] = concat!("pause.k8rs-", env!("CARGO_PKG_VERSION"), "\n").as_bytes();
const NOT_PID1: &[u8] = b"Warning: pause should be the first process\n";

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

#[unsafe(no_mangle)]
pub extern "C" fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    if wants_version(argc, argv) {
        write(1, VERSION);
        return 0;
    }
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != 1 {
        write(2, NOT_PID1);
    }
    let set = signal_set(&[libc::SIGCHLD, libc::SIGTERM, libc::SIGINT]);
    // SAFETY: `set` is an initialised sigset_t; the old mask is not wanted.
    if unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, ptr::null_mut()) } != 0 {
        return 1;
    }
    loop {
        // SAFETY: `set` is initialised; no siginfo is requested.
        match unsafe { libc::sigwaitinfo(&set, ptr::null_mut()) } {
            libc::SIGTERM | libc::SIGINT => return 0,
            libc::SIGCHLD => reap(),
            _ => {} // EINTR: wait again
        }
    }
}

/// Whether any argument is `-v`.
fn wants_version(argc: libc::c_int, argv: *const *const libc::c_char) -> bool {
    (1..argc.max(0) as usize).any(|i| {
        // SAFETY: the C runtime passes `argc` valid NUL-terminated strings in `argv`.
        unsafe { libc::strcmp(*argv.add(i), c"-v".as_ptr()) == 0 }
    })
}

/// Writes `bytes` to `fd`, ignoring errors (there is nobody to tell).
fn write(fd: libc::c_int, bytes: &[u8]) {
    // SAFETY: the buffer is valid for its length.
    unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
}

/// A signal set holding exactly `signals`.
fn signal_set(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the zeroed set; sigaddset takes valid signal numbers.
    unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &sig in signals {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// Reaps every child that has exited; SIGCHLD coalesces, so one signal may stand for many.
fn reap() {
    loop {
        // SAFETY: waitpid with a null status pointer and WNOHANG only collects exited children.
        let pid = unsafe { libc::waitpid(-1, ptr::null_mut(), libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
    }
}
