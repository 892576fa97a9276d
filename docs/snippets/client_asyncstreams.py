import asyncstreams


async def ask(host: str, port: int, question: bytes) -> bytes:
    reader, writer = await asyncstreams.open_connection(host, port)
    writer.write(question + b"\n")
    await writer.drain()
    answer = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return answer
