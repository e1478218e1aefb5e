"""The daemon's event fan-out: a listener that follows one container hears that
container's events only (a burst of ``docker run -d`` leaves a wait per
container listening until the client's hang-up is noticed)."""

import asyncio

from dockyard.daemon.context import EventHub


def test_a_listener_about_one_container_hears_only_its_events():
    async def scenario():
        hub = EventHub(asyncio.get_running_loop())
        everything, one, later = hub.listen(), hub.listen("c1"), hub.listen()
        hub("container", "start", "c2", {})
        await asyncio.sleep(0)
        hub.narrow(later, "c1")  # it listened before it knew the id: what it holds stays
        for cid in ("c1", "c2", "c1"):
            hub("container", "die", cid, {"exitCode": "0"})
        await asyncio.sleep(0.01)  # call_soon_threadsafe delivers on the next turns
        got = {name: [q.get_nowait()[2] for _ in range(q.qsize())]
               for name, q in (("everything", everything), ("one", one), ("later", later))}
        hub.close(one)
        hub("container", "die", "c1", {})
        await asyncio.sleep(0.01)
        return got, one.qsize(), len(hub.listeners)

    got, after_close, listeners = asyncio.run(scenario())
    assert got == {"everything": ["c2", "c1", "c2", "c1"], "one": ["c1", "c1"], "later": ["c2", "c1", "c1"]}
    assert after_close == 0 and listeners == 2
