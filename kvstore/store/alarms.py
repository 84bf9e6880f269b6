"""The raised alarms, as etcd's alarm store keeps them: part of the replicated state.

Alarm requests (GET, ACTIVATE, DEACTIVATE) go through the log like writes, as in etcd, so every
member agrees on them and a restart keeps them (they are in snapshots). While NOSPACE is
raised, the apply step refuses what would grow the state (etcd's capped applier): puts, Txns
with a put, lease grants. CORRUPT is recorded and reported; nothing raises it here.
"""
from __future__ import annotations

from ..api import rpc_pb2 as pb

NOSPACE = pb.AlarmType.NOSPACE


class AlarmTable:
    def __init__(self) -> None:
        self._raised: dict[tuple[int, int], None] = {}  # (member id, alarm type), in order raised
        self.nospace = False  # NOSPACE is raised by some member: writes that grow are refused

    def get(self, alarm: int = pb.AlarmType.NONE) -> list[pb.AlarmMember]:
        """The raised alarms of one type (NONE: all), as etcd lists them."""
        return [pb.AlarmMember(memberID=member, alarm=pb.AlarmType.Name(kind))
                for member, kind in self._raised if alarm == pb.AlarmType.NONE or kind == alarm]

    def apply(self, r: pb.AlarmRequest) -> pb.AlarmResponse:
        """An applied alarm request's response (etcd's applierV3backend.Alarm)."""
        resp = pb.AlarmResponse()
        if r.action == pb.AlarmRequest.GET:
            resp.alarms.extend(self.get(r.alarm))
        elif r.action == pb.AlarmRequest.ACTIVATE:
            # NONE is not an alarm; one raised already is answered as it stands.
            if r.alarm != pb.AlarmType.NONE:
                self._raised[(r.memberID, r.alarm)] = None
                resp.alarms.add(memberID=r.memberID, alarm=r.alarm)
        elif r.action == pb.AlarmRequest.DEACTIVATE:
            if (r.memberID, r.alarm) in self._raised:
                del self._raised[(r.memberID, r.alarm)]
                resp.alarms.add(memberID=r.memberID, alarm=r.alarm)
        self.nospace = any(kind == NOSPACE for _, kind in self._raised)
        return resp

    def raised(self, member: int, alarm: int) -> bool:
        return (member, alarm) in self._raised

    def dump(self) -> list[list[int]]:
        return [[member, kind] for member, kind in self._raised]

    def load(self, state) -> None:
        self._raised = {(member, kind): None for member, kind in state}
        self.nospace = any(kind == NOSPACE for _, kind in self._raised)
