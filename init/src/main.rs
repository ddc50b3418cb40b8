fn main() {
    orc_init::boot::main()
}
