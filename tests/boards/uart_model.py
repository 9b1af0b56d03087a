"""A host's UART in the Amaranth simulator: bytes to line levels and back."""

__all__ = ["send_bytes", "send_break", "receive_bytes"]


async def send_bytes(ctx, pin, data, cpb, gap=0):
    """Bit-bang ``data`` as 8N1 frames on ``pin``, ``cpb`` cycles per bit."""
    for byte in data:
        for bit in [0] + [(byte >> k) & 1 for k in range(8)] + [1]:
            ctx.set(pin, bit)
            await ctx.tick().repeat(cpb)
        if gap:
            await ctx.tick().repeat(gap)


async def send_break(ctx, pin, cpb, bits=12):
    ctx.set(pin, 0)
    await ctx.tick().repeat(bits * cpb)
    ctx.set(pin, 1)
    await ctx.tick().repeat(2 * cpb)


async def receive_bytes(ctx, pin, count, cpb, *, timeout=None):
    """Decode ``count`` 8N1 frames from ``pin``; returns (bytes, framing errors)."""
    out, errors, waited = bytearray(), 0, 0
    while len(out) < count:
        await ctx.tick()
        waited += 1
        if timeout is not None and waited > timeout:
            raise TimeoutError(f"received {len(out)} of {count} bytes")
        if ctx.get(pin):
            continue
        await ctx.tick().repeat(cpb // 2)          # middle of the start bit
        byte = 0
        for k in range(8):
            await ctx.tick().repeat(cpb)
            byte |= ctx.get(pin) << k
        await ctx.tick().repeat(cpb)
        errors += not ctx.get(pin)
        out.append(byte)
        waited = 0
    return bytes(out), errors
