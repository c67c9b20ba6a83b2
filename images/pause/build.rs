//! Static glibc's startup code refers to the unwinder even though this program never unwinds
//! (`panic = "abort"`, no std): link libgcc's static unwinder so those symbols resolve.
fn main() {
    println!("cargo:rustc-link-arg-bins=-lgcc_eh");
}
