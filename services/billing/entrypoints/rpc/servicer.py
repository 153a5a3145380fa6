"""The BillingService gRPC servicer: proto in, handler call, proto out. Errors are ServiceErrors,
which the shared interceptor turns into statuses.

Each topic's RPCs are a mixin in the module of the same name as its use cases.
"""

from __future__ import annotations

from reelbatch.proto.billing.v1 import billing_pb2, billing_pb2_grpc

from services.billing.entrypoints.rpc.access import AccessRpcs
from services.billing.entrypoints.rpc.auto_top_up import AutoTopUpRpcs
from services.billing.entrypoints.rpc.console import ConsoleRpcs
from services.billing.entrypoints.rpc.console_access import ConsoleAccessRpcs
from services.billing.entrypoints.rpc.limits import LimitRpcs
from services.billing.entrypoints.rpc.payments import PaymentRpcs
from services.billing.entrypoints.rpc.reporting import ReportingRpcs
from services.billing.entrypoints.rpc.reservations import ReservationRpcs
from services.billing.entrypoints.rpc.settlement import SettlementRpcs
from services.billing.entrypoints.rpc.spend_control import SpendControlRpcs
from services.billing.entrypoints.rpc.wallet import WalletRpcs

SERVICE_NAME = billing_pb2.DESCRIPTOR.services_by_name["BillingService"].full_name


class BillingServicer(
    AccessRpcs,
    ConsoleAccessRpcs,
    WalletRpcs,
    ReservationRpcs,
    SpendControlRpcs,
    AutoTopUpRpcs,
    SettlementRpcs,
    PaymentRpcs,
    ReportingRpcs,
    ConsoleRpcs,
    LimitRpcs,
    billing_pb2_grpc.BillingServiceServicer,
):
    """Translates BillingService calls to `BillingHandlers`."""
