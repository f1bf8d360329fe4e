/* Entry of a tiny guest program: the VMM enters here in 64-bit mode exactly
 * as it enters a Linux kernel (identity-mapped paging, RSI = boot_params).
 * Sets up a stack, calls guest_main(boot_params), then powers off. */
        .section .text.start, "ax"
        .globl _start
        .code64
_start:
        leaq    tinyguest_stack_top(%rip), %rsp
        movq    %rsi, %rdi
        call    guest_main
        call    tg_power_off
1:      hlt
        jmp     1b

        .section .bss
        .balign 16
        .skip   16384
tinyguest_stack_top:

        .section .note.GNU-stack, "", @progbits
