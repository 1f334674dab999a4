"""A FastAPI app on monps_store.aio: the pool opened and closed with the app's lifespan, one
unit of work per request (committed when the endpoint returns, rolled back when it raises).

    DATABASE_URL=postgresql://... uvicorn examples.fastapi_app:app
"""

import contextlib
from decimal import Decimal

from fastapi import Depends, FastAPI, HTTPException

from monps_store import aio, errors
from monps_store.repositories import crud, friction, teams


@contextlib.asynccontextmanager
async def lifespan(app):
    await aio.init_db()  # DATABASE_URL or DB_*, as for the sync API
    yield
    await aio.close_db()


app = FastAPI(lifespan=lifespan)


async def unit_of_work():
    async with aio.unit_of_work(actor="api", reason="web request") as transaction:
        yield transaction


async def team_or_404(name: str):
    try:
        return await aio.run(teams.get_by_name, name)
    except errors.NotFound as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None


@app.get("/teams/{name}", dependencies=[Depends(unit_of_work)])
async def get_team(name: str):
    team = await team_or_404(name)
    return {"team_name": team.team_name, "league": team.league, "roi": str(team.roi)}


@app.put("/teams/{name}/roi", dependencies=[Depends(unit_of_work)])
async def set_roi(name: str, roi: Decimal):
    team = await aio.run(crud.update, await team_or_404(name), roi=roi)
    return {"team_name": team.team_name, "roi": str(team.roi)}


@app.get("/friction", dependencies=[Depends(unit_of_work)])
async def high_friction(threshold: Decimal = Decimal(70), limit: int = 20):
    pairs = await aio.run(friction.get_high_friction_matches, threshold, limit)
    # home_team/away_team were loaded eagerly inside aio.run(): no query here.
    return [{"home": p.home_team.team_name, "away": p.away_team.team_name,
             "friction_score": str(p.friction_score)} for p in pairs]
