import sys

import anyio
from anyio.streams.stapled import StapledByteStream

import asyncstreams

UPPER = "import sys\nfor line in sys.stdin: print(line.upper(), end='', flush=True)"


async def shout(lines: list[bytes]) -> list[bytes]:
    async with await anyio.open_process([sys.executable, "-c", UPPER]) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        pipes = StapledByteStream(process.stdin, process.stdout)  # one anyio byte stream
        reader, writer = asyncstreams.wrap(pipes)
        replies = []
        for line in lines:
            writer.write(line)
            await writer.drain()
            replies.append(await reader.readline())
        writer.write_eof()  # the child's stdin ends
        replies.append(await reader.read())  # b"": the child has exited
        writer.close()
        await writer.wait_closed()
    return replies
