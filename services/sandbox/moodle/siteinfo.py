"""core_webservice_get_site_info."""

from __future__ import annotations

from typing import Any

from . import params as P
from .ctx import Ctx
from .model import RELEASE, SITEID, VERSION
from .views import profile_image

PARAMS = P.Single({"serviceshortnames": P.Multiple(P.Value(P.ALPHANUMEXT), P.DEFAULT, [])})

# tool_mobile's advanced features list as a default 4.5 site reports it
ADVANCED_FEATURES = (("usecomments", 1), ("usetags", 1), ("enablenotes", 1), ("messaging", 1), ("enableblogs", 1),
                     ("enablecompletion", 1), ("enablebadges", 1), ("mnet_dispatcher_mode", 0),
                     ("enableglobalsearch", 0), ("enablecourserelativedates", 0))


def get_site_info(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    user = ctx.state.users[ctx.userid]
    return {
        "sitename": ctx.state.config.sitename,
        "username": user.username,
        "firstname": user.firstname,
        "lastname": user.lastname,
        "fullname": user.fullname,
        "lang": user.lang,
        "userid": user.id,
        "siteurl": ctx.wwwroot,
        "userpictureurl": profile_image(ctx.wwwroot, "f1"),
        "functions": [{"name": name, "version": VERSION} for name in ctx.service],
        "downloadfiles": 0,
        "uploadfiles": 0,
        "release": RELEASE,
        "version": VERSION,
        "mobilecssurl": "",
        "advancedfeatures": [{"name": n, "value": v} for n, v in ADVANCED_FEATURES],
        "usercanmanageownfiles": True,
        "userquota": 0,
        "usermaxuploadfilesize": -1,
        "userhomepage": 1,
        "siteid": SITEID,
        "sitecalendartype": "gregorian",
        "usercalendartype": user.calendartype,
        "userissiteadmin": True,
        "theme": "boost",
        "limitconcurrentlogins": 0,
        "policyagreed": 0,
    }
