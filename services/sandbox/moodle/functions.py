"""The token's service (the functions it may call) and the other function names a 4.5 site knows, so that a
real but unlisted function answers accessexception while an unknown name answers invalidrecord."""

from __future__ import annotations

from . import courses, enrol, siteinfo, users
from .ctx import Function

SERVICE: dict[str, Function] = {f.name: f for f in (
    Function("core_webservice_get_site_info", "moodle", siteinfo.PARAMS, siteinfo.get_site_info),
    Function("core_course_duplicate_course", "moodle", courses.DUPLICATE_PARAMS, courses.duplicate_course,
             write=True, locked=False),
    Function("core_course_get_courses_by_field", "moodle", courses.GET_BY_FIELD_PARAMS,
             courses.get_courses_by_field),
    Function("core_course_update_courses", "moodle", courses.UPDATE_PARAMS, courses.update_courses, write=True),
    Function("core_course_delete_courses", "moodle", courses.DELETE_PARAMS, courses.delete_courses, write=True),
    Function("core_user_create_users", "moodle", users.CREATE_PARAMS, users.create_users, write=True),
    Function("core_user_get_users_by_field", "moodle", users.GET_BY_FIELD_PARAMS, users.get_users_by_field),
    Function("core_user_delete_users", "moodle", users.DELETE_PARAMS, users.delete_users, returns=False,
             write=True),
    Function("enrol_manual_enrol_users", "enrol_manual", enrol.ENROL_PARAMS, enrol.enrol_users, returns=False,
             write=True),
    Function("enrol_manual_unenrol_users", "enrol_manual", enrol.UNENROL_PARAMS, enrol.unenrol_users,
             returns=False, write=True),
    Function("core_enrol_get_enrolled_users", "moodle", enrol.ENROLLED_PARAMS, enrol.get_enrolled_users),
)}

# A selection of lib/db/services.php and plugin db/services.php names (external_functions rows of a 4.5 site).
OTHER_FUNCTIONS = frozenset("""
core_auth_confirm_user core_auth_request_password_reset core_backup_get_copy_progress core_badges_get_user_badges
core_block_get_course_blocks core_block_get_dashboard_blocks core_calendar_create_calendar_events
core_calendar_delete_calendar_events core_calendar_get_calendar_events core_cohort_add_cohort_members
core_cohort_create_cohorts core_cohort_delete_cohort_members core_cohort_delete_cohorts core_cohort_get_cohorts
core_cohort_search_cohorts core_cohort_update_cohorts core_comment_get_comments
core_completion_get_activities_completion_status core_completion_get_course_completion_status
core_completion_mark_course_self_completed core_completion_update_activity_completion_status_manually
core_course_add_content_item_to_user_favourites core_course_check_updates core_course_create_categories
core_course_create_courses core_course_delete_categories core_course_delete_modules core_course_edit_module
core_course_edit_section core_course_get_categories core_course_get_contents core_course_get_course_module
core_course_get_course_module_by_instance core_course_get_courses
core_course_get_enrolled_courses_by_timeline_classification core_course_get_recent_courses
core_course_get_updates_since core_course_get_user_administration_options core_course_get_user_navigation_options
core_course_import_course core_course_search_courses core_course_set_favourite_courses
core_course_update_categories core_course_view_course core_enrol_edit_user_enrolment
core_enrol_get_course_enrolment_methods core_enrol_get_enrolled_users_with_capability
core_enrol_get_potential_users core_enrol_get_users_courses core_enrol_search_users
core_enrol_submit_user_enrolment_form
core_enrol_unenrol_user_enrolment core_files_delete_draft_files core_files_get_files core_files_get_unused_draft_itemid
core_files_upload core_grades_get_gradeitems core_grades_update_grades core_group_add_group_members
core_group_assign_grouping core_group_create_groupings core_group_create_groups core_group_delete_group_members
core_group_delete_groupings core_group_delete_groups core_group_get_activity_allowed_groups
core_group_get_course_groupings core_group_get_course_groups core_group_get_course_user_groups
core_group_get_groupings core_group_get_groups core_group_update_groups core_message_block_user
core_message_delete_conversations_by_id core_message_get_conversations core_message_get_messages
core_message_send_instant_messages core_notes_create_notes core_notes_delete_notes core_notes_get_course_notes
core_question_update_flag core_rating_get_item_ratings core_role_assign_roles core_role_unassign_roles
core_search_get_results core_tag_get_tags core_user_add_user_device core_user_add_user_private_files
core_user_agree_site_policy core_user_get_course_user_profiles core_user_get_private_files_info
core_user_get_user_preferences core_user_get_users core_user_remove_user_device core_user_search_identity
core_user_set_user_preferences core_user_update_picture core_user_update_user_preferences core_user_update_users
core_user_view_user_list core_user_view_user_profile core_webservice_get_site_info enrol_guest_get_instance_info
enrol_self_enrol_user enrol_self_get_instance_info gradereport_overview_get_course_grades
gradereport_user_get_grade_items gradereport_user_get_grades_table mod_assign_get_assignments mod_assign_get_grades
mod_assign_get_submission_status mod_assign_get_submissions mod_assign_save_grade mod_assign_save_submission
mod_assign_submit_for_grading mod_forum_add_discussion mod_forum_add_discussion_post mod_forum_get_discussion_posts
mod_forum_get_forum_discussions mod_forum_get_forums_by_courses mod_lti_get_tool_launch_data
mod_lti_get_tool_types mod_page_get_pages_by_courses mod_quiz_get_attempt_review mod_quiz_get_quizzes_by_courses
mod_quiz_get_user_attempts mod_resource_get_resources_by_courses mod_url_get_urls_by_courses tool_mobile_get_config
tool_mobile_get_plugins_supporting_mobile tool_mobile_get_public_config
""".split())

KNOWN = OTHER_FUNCTIONS | frozenset(SERVICE)
