"""All of the batch service's SQL topics over one database, as the use cases reach them."""

from __future__ import annotations

from dataclasses import dataclass

from libs.db import Database
from services.batch.adapters.sql.breakers import ModelBreakers
from services.batch.adapters.sql.cancel import BatchCancels
from services.batch.adapters.sql.claims import TaskClaims
from services.batch.adapters.sql.input_files import InputFiles
from services.batch.adapters.sql.intake import BatchIntake
from services.batch.adapters.sql.listings import BatchListings
from services.batch.adapters.sql.provider_jobs import ProviderJobs
from services.batch.adapters.sql.queueing import BatchQueue, DispatchWindows
from services.batch.adapters.sql.rate_budgets import RateBudgets
from services.batch.adapters.sql.reads import BatchReads
from services.batch.adapters.sql.recovery import BatchRecovery
from services.batch.adapters.sql.reservations import BatchReservations
from services.batch.adapters.sql.settlement import BatchSettlements


@dataclass(frozen=True)
class BatchStore:
    """Batches, tasks and the batch outbox in PostgreSQL, one attribute per topic."""

    windows: DispatchWindows
    intake: BatchIntake
    reservations: BatchReservations
    queue: BatchQueue
    claims: TaskClaims
    cancels: BatchCancels
    recovery: BatchRecovery
    settlements: BatchSettlements
    reads: BatchReads
    listings: BatchListings
    input_files: InputFiles
    provider_jobs: ProviderJobs
    breakers: ModelBreakers
    rate_budgets: RateBudgets

    @classmethod
    def open(cls, database: Database, windows: DispatchWindows) -> BatchStore:
        """The topics over `database`; nothing connects until a statement runs."""
        return cls(
            windows=windows,
            intake=BatchIntake(database),
            reservations=BatchReservations(database),
            queue=BatchQueue(database, windows),
            claims=TaskClaims(database, windows),
            cancels=BatchCancels(database),
            recovery=BatchRecovery(database, windows),
            settlements=BatchSettlements(database),
            reads=BatchReads(database),
            listings=BatchListings(database),
            input_files=InputFiles(database),
            provider_jobs=ProviderJobs(database),
            breakers=ModelBreakers(database),
            rate_budgets=RateBudgets(database),
        )
