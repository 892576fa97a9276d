import asyncio
import sys

UPPER = "import sys\nfor line in sys.stdin: print(line.upper(), end='', flush=True)"


async def shout(lines: list[bytes]) -> list[bytes]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", UPPER, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdin is not None
    assert process.stdout is not None
    reader, writer = process.stdout, process.stdin
    replies = []
    for line in lines:
        writer.write(line)
        await writer.drain()
        replies.append(await reader.readline())
    writer.write_eof()  # the child's stdin ends
    replies.append(await reader.read())  # b"": the child has exited
    await process.wait()
    return replies
