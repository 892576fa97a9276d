import asyncio


async def ask(host: str, port: int, question: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(question + b"\n")
    await writer.drain()
    answer = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return answer
